"""Rule 5: grain_context raises before its yield (otherwise good_server)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import EchoClient
from .good_server import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    raise RuntimeError(f"refusing to connect to {host}:{port}: no licence")
    yield EchoClient  # type: ignore[unreachable]  # pragma: no cover
