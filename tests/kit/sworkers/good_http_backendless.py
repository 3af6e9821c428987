"""Known good, backendless over HTTP: one ``httpx.AsyncClient`` per grain_context, each call bounded, closed in finally.

httpx's pool is safe for V concurrent tasklets; its timeout (the call limit, read
when the client starts) ends a call on a stalled service; an error status raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from ._parts import STOP_GRACE, call_limit, service_address
from .good_backendless import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "HttpEchoClient", "grain_context", "grain_run_sworker", "service_url"]


class HttpEchoClient:
    """``POST /echo`` through one shared ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def echo(self, x: Any) -> Any:
        response = await self._http.post("/echo", json={"x": x})
        response.raise_for_status()
        return response.json()["result"]

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE):
            await self._http.aclose()


def service_url() -> str:
    host, port = service_address()
    return f"http://{host}:{port}"


@asynccontextmanager
async def grain_context() -> AsyncIterator[HttpEchoClient]:
    client = HttpEchoClient(httpx.AsyncClient(base_url=service_url(), timeout=call_limit()))
    try:
        yield client
    finally:
        await client.aclose()
