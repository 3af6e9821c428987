"""Known good, server variant: an anyio subprocess server, bounded readiness, cleanup in finally."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, EchoClient, running_echo_server

GRAIN_SWORKER_CONFIG: dict[str, object] = {}


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    async with running_echo_server() as port:
        yield {"name": f"echo@{HOST}:{port}", "host": HOST, "port": port}


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
