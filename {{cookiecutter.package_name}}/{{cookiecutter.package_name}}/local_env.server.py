"""What the demo and the tests run beside Grain for this sworker.

Nothing, for a server sworker: the worker's ``grain_run_sworker`` starts the
server. On one machine it listens on loopback, set explicitly here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .the_sworker import HOST_ENV


@contextmanager
def local_service() -> Iterator[dict[str, str]]:
    """The environment variables the head and the worker need on one machine."""
    yield {HOST_ENV: "127.0.0.1"}
