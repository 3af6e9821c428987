"""What the demo, the tests and the conformance kit ask of your sworker: edit it with your client.

The harness (``demo/``, ``tests/``) never names your tasklet, its inputs or its answers
itself: it submits ``TASKLET`` with inputs from ``example``, judges each result with
``check``, and the kit and the contract tests make their calls through ``probe``.
"""

from __future__ import annotations

from typing import Any

from .client import Client
from .tasklet import square

#: The tasklet the demo submits, one ``example(i)`` each (a ``grain.delayed`` function).
TASKLET = square


def example(i: int) -> float:
    """The input of the ``i``-th tasklet (``i`` >= 0); different ``i``, different right answers."""
    return float(i)


def check(argument: float, result: Any) -> None:
    """Raise ``AssertionError`` unless ``result`` is the right answer to ``argument``."""
    if result != argument * argument:
        raise AssertionError(f"square({argument!r}) returned {result!r}, expected {argument * argument!r}")


async def probe(client: Client, variant: int = 0) -> Any:
    """One representative call through ``client``, the one the tasklet makes; a wrong answer raises.

    Concurrent calls get different ``variant`` numbers, so a reply delivered to the wrong caller
    is caught.
    """
    argument = example(3 + variant)
    result = await client.square(argument)
    check(argument, result)
    return result
