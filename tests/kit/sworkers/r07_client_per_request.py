"""Rule 7: a new HTTP client per request (otherwise a good backendless HTTP client).

``httpx.AsyncClient()`` builds an SSL context, which loads the system's CA
certificates from disk: a blocking read, tens of milliseconds, on every call.
Nothing in the code looks like a blocking call; the kit names the line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from ._parts import call_limit, service_address
from .good_backendless import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


class PerRequestClient:
    def __init__(self, url: str) -> None:
        self._url = url

    async def echo(self, x: Any) -> Any:
        async with httpx.AsyncClient(timeout=call_limit()) as http:  # the bug: a new client (and SSL context) per call
            response = await http.post(f"{self._url}/echo", json={"x": x})
        response.raise_for_status()
        return response.json()["result"]


@asynccontextmanager
async def grain_context() -> AsyncIterator[PerRequestClient]:
    host, port = service_address()
    yield PerRequestClient(f"http://{host}:{port}")
