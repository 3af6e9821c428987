"""Rule 6: the HTTP client is never closed (otherwise good_http_backendless).

Its connections outlive grain_context: each instance's client keeps its sockets
until the process ends (an SDK whose ``__del__`` closes them only under asyncio,
such as ``AsyncOpenAI``, leaks them the same way under Grain's trio).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from ._parts import call_limit
from .good_http_backendless import GRAIN_SWORKER_CONFIG, HttpEchoClient, grain_run_sworker, service_url

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_context() -> AsyncIterator[HttpEchoClient]:
    yield HttpEchoClient(httpx.AsyncClient(base_url=service_url(), timeout=call_limit()))  # the bug: never closed
