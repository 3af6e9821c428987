"""Backendless floor: the tasklet run through ``grain.local_sworker`` (no client at all)."""

from __future__ import annotations

from grain.delayed import delayed


@delayed
async def square(x: float) -> float:
    return x * x
