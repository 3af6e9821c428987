"""The conformance suite's probe: one representative call, the one the tasklet makes."""

from __future__ import annotations

from .client import Client


async def probe(client: Client, variant: int = 0) -> float:
    """Square a number through ``client``; a wrong answer (e.g. a crossed reply) raises.

    The suite passes a different ``variant`` to each concurrent call, so a reply
    delivered to the wrong caller is caught.
    """
    x = 3.0 + variant
    result = await client.square(x)
    if result != x * x:
        raise AssertionError(f"square({x}) returned {result!r}, expected {x * x!r}")
    return result
