"""Rule 3: the yielded dict has no name (otherwise good_server)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import HOST, running_echo_server
from .good_server import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[Any]:
    async with running_echo_server() as port:
        yield {"id": f"echo@{HOST}:{port}", "host": HOST, "port": port}
