"""Rule 3: the name is an empty str (otherwise good_server)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, free_port, start_server, stop_server, wait_listening
from .good_server import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[Any]:
    port = free_port()
    process = await start_server(port)
    try:
        await wait_listening(process, port)
        yield {"name": "", "host": HOST, "port": port}
    finally:
        await stop_server(process)
