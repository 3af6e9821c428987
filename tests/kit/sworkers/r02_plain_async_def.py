"""Rule 2: grain_run_sworker is a plain coroutine function, not an async context manager."""

from typing import Any

from .good_backendless import GRAIN_SWORKER_CONFIG, grain_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


async def grain_run_sworker() -> dict[str, Any]:
    return {"name": "echo-service"}
