"""Rule 6: a listening socket opened beside the server and never closed (otherwise good_server)."""

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, LEAKED, free_port, start_server, stop_server, wait_listening
from .good_server import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    process = await start_server(port)
    metrics = socket.create_server((HOST, 0))  # a metrics endpoint, never closed
    LEAKED.append(metrics)
    try:
        await wait_listening(process, port)
        yield {"name": f"echo@{HOST}:{port}", "host": HOST, "port": port}
    finally:
        await stop_server(process)
