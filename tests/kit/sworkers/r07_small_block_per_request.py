"""Rule 7: every request blocks the event loop for 40 ms (otherwise good_backendless).

Under the 100 ms limit each time, but on every call: at V = 1 no single stall is
long, and the kit still sees the same blocking line in every call (steady).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import EchoClient, service_address
from .good_backendless import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
BLOCKING_SECONDS = 0.04


@asynccontextmanager
async def grain_context() -> AsyncIterator[EchoClient]:
    host, port = service_address()
    client = await EchoClient.connect(host, port, blocking=BLOCKING_SECONDS)
    try:
        yield client
    finally:
        await client.aclose()
