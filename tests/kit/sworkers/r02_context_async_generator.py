"""Rule 2: grain_context is an undecorated async generator (otherwise good_server)."""

from collections.abc import AsyncIterator

from ._parts import EchoClient
from .good_server import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
