"""Rule 4: a field is a pathlib.Path (otherwise good_backendless, whose grain_context also takes it)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ._parts import EchoClient, service_address
from .good_backendless import GRAIN_SWORKER_CONFIG

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    yield {"name": "echo-service", "cache": Path("/tmp")}


@asynccontextmanager
async def grain_context(cache: Any = None) -> AsyncIterator[EchoClient]:
    host, port = service_address()
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
