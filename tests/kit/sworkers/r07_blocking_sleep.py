"""Rule 7: the client call blocks the event loop (time.sleep) for 0.15 s (otherwise good_backendless)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import EchoClient, service_address
from .good_backendless import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
BLOCKING_SECONDS = 0.15


@asynccontextmanager
async def grain_context() -> AsyncIterator[EchoClient]:
    host, port = service_address()
    client = await EchoClient.connect(host, port, blocking=BLOCKING_SECONDS)
    try:
        yield client
    finally:
        await client.aclose()
