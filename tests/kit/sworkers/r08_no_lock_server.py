"""Rule 8: one shared stream and no lock (otherwise good_server)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import EchoClient
from .good_server import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port, lock=False)
    try:
        yield client
    finally:
        await client.aclose()
