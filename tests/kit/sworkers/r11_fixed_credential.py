"""Rule 11: a fixed password in the yielded fields, the same for every instance (otherwise good_server)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, EchoClient, running_echo_server
from .good_server import GRAIN_SWORKER_CONFIG

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
PASSWORD = "correct-horse-battery"


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    async with running_echo_server() as port:
        yield {"name": f"echo@{HOST}:{port}", "host": HOST, "port": port, "password": PASSWORD}


@asynccontextmanager
async def grain_context(host: str, port: int, password: str) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
