"""Rule 5: grain_run_sworker yields a field (timeout) that grain_context does not accept."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .good_backendless import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    yield {"name": "echo-service", "timeout": 5.0}
