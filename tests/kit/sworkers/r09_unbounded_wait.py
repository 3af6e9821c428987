"""Rule 9: a readiness wait without a timeout, against a server that never listens.

Otherwise good_server: the same loop there runs under ``wait_listening``'s time
limit (a server that never listens is what makes the missing limit show).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, free_port, poll_until_listening, start_server, stop_server
from .good_server import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    process = await start_server(port, silent=True)  # never listens
    try:
        await poll_until_listening(process, port)  # no time limit: waits forever
        yield {"name": f"echo@{HOST}:{port}", "host": HOST, "port": port}
    finally:
        await stop_server(process)
