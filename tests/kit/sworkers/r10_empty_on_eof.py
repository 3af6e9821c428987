"""Rule 10: the client returns "" when the server has closed the connection (otherwise good_server)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import EchoClient
from .good_server import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port, eof_raises=False)
    try:
        yield client
    finally:
        await client.aclose()
