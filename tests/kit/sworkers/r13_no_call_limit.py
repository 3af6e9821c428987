"""Rule 13: an HTTP client with no time limit (``timeout=None``; otherwise good_http_backendless).

On a service that stops answering (a hung job, a SIGSTOP, a full disk) a call
waits forever, and so does every tasklet on the instance: Grain has no limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from .good_http_backendless import GRAIN_SWORKER_CONFIG, HttpEchoClient, grain_run_sworker, service_url

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_context() -> AsyncIterator[HttpEchoClient]:
    client = HttpEchoClient(httpx.AsyncClient(base_url=service_url(), timeout=None))  # the bug: no limit
    try:
        yield client
    finally:
        await client.aclose()
