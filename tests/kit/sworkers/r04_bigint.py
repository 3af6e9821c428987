"""Rule 4: a field is an int beyond 64 bits (otherwise good_server, whose grain_context also takes it)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, EchoClient, running_echo_server
from .good_server import GRAIN_SWORKER_CONFIG

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    async with running_echo_server() as port:
        yield {"name": f"echo@{HOST}:{port}", "host": HOST, "port": port, "extra": 2**70}


@asynccontextmanager
async def grain_context(host: str, port: int, extra: Any = None) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
