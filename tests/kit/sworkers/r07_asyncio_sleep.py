"""Rule 7: asyncio.sleep in grain_run_sworker, which fails under trio (otherwise good_backendless)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .good_backendless import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    await asyncio.sleep(0.01)  # e.g. a settling pause, written against asyncio
    yield {"name": "echo-service"}
