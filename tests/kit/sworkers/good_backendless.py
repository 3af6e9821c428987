"""Known good, backendless variant: the service runs elsewhere; its address is read inside grain_context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import EchoClient, service_address

GRAIN_SWORKER_CONFIG = {"BACKENDLESS": True}


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    yield {"name": "echo-service"}  # one instance per head: a constant name is fine


@asynccontextmanager
async def grain_context() -> AsyncIterator[EchoClient]:
    host, port = service_address()
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
