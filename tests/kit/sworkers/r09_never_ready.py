"""Rule 9: a server that never becomes ready, behind a readiness wait longer than the kit's limit.

Its wait is bounded (60 s), but at 20 times the corpus's start-up limit: the kit
judges it at its own limit, once, kills the server and moves on.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, free_port, start_server, stop_server, wait_listening
from .good_server import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    process = await start_server(port, silent=True)  # never listens
    try:
        await wait_listening(process, port, seconds=60)
        yield {"name": f"echo@{HOST}:{port}", "host": HOST, "port": port}
    finally:
        await stop_server(process)
