"""Rule 6: a shielded cleanup that takes 1.2 s (past a 1 s limit; otherwise good_backendless)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .good_backendless import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
CLEANUP_SECONDS = 1.2


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    try:
        yield {"name": "echo-service"}
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(CLEANUP_SECONDS)  # e.g. flushing a cache, unbounded
