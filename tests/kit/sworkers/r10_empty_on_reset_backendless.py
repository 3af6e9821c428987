"""Rule 10: the client answers a reset connection with "" (otherwise good_backendless)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import EchoClient, service_address
from .good_backendless import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_context() -> AsyncIterator[EchoClient]:
    host, port = service_address()
    client = await EchoClient.connect(host, port, swallow_reset=True)
    try:
        yield client
    finally:
        await client.aclose()
