"""Rule 6: teardown waits 30 s (shielded, e.g. for jobs to drain) before it stops the server (otherwise good_server).

The kit waits for it only up to its cleanup limit, then kills the server and
moves on: a verdict in seconds, not in minutes.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ._parts import HOST, free_port, start_server, stop_server, wait_listening
from .good_server import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
DRAIN_SECONDS = 30.0


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    process = await start_server(port)
    try:
        await wait_listening(process, port)
        yield {"name": f"echo@{HOST}:{port}", "host": HOST, "port": port}
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(DRAIN_SECONDS)  # unbounded by the module: Grain waits it out
        await stop_server(process)
