"""Rule 8: a client that honours ``Retry-After`` in full, as some SDKs do (otherwise good_http_backendless).

Above the service's limit, a refused call sleeps the 30 s the service asks for
(holding the tasklet's Capacity slot) before it tries again: the call outlasts
any reasonable limit. The fix is V at most the service's limit, and retry waits
capped well below the call limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from ._parts import call_limit
from .good_http_backendless import GRAIN_SWORKER_CONFIG, HttpEchoClient, grain_run_sworker, service_url

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
RETRIES = 2


class RetryingClient(HttpEchoClient):
    async def echo(self, x: Any) -> Any:
        for _ in range(RETRIES):
            response = await self._http.post("/echo", json={"x": x})
            if response.status_code != httpx.codes.TOO_MANY_REQUESTS:
                break
            await self._sleep_before_retry(float(response.headers.get("Retry-After", "0.5")))
        response.raise_for_status()
        return response.json()["result"]

    async def _sleep_before_retry(self, seconds: float) -> None:
        await anyio.sleep(seconds)  # the bug: the service's wait, uncapped


@asynccontextmanager
async def grain_context() -> AsyncIterator[RetryingClient]:
    client = RetryingClient(httpx.AsyncClient(base_url=service_url(), timeout=call_limit()))
    try:
        yield client
    finally:
        await client.aclose()
