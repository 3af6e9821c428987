"""Known good, server variant: an anyio subprocess server, bounded readiness, cleanup in finally."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, EchoClient, free_port, start_server, stop_server, wait_listening

GRAIN_SWORKER_CONFIG: dict[str, object] = {}


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    process = await start_server(port)
    try:
        await wait_listening(process, port)
        yield {"name": f"echo@{HOST}:{port}", "host": HOST, "port": port}
    finally:
        await stop_server(process)


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
