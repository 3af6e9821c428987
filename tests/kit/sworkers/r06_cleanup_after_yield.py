"""Rule 6 (the seed's bug): cleanup after a bare yield, which never runs under cancellation."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, free_port, start_server, stop_server, wait_listening
from .good_server import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    process = await start_server(port)
    await wait_listening(process, port)
    yield {"name": f"echo@{HOST}:{port}", "host": HOST, "port": port}
    await stop_server(process)  # never runs: Grain cancels; the server is orphaned
