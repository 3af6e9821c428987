"""Known good, backendless: one HTTP client per process, kept at module level (otherwise good_http_backendless).

Grain runs one event loop per head process, so a client made once and kept for
the process is fine there. The kit runs the module twice in one process (trio,
then asyncio): the client made under trio is then used under asyncio, which is
the kit's doing, not a portability problem of the module, whether it shows at
the start (the ping) or in a call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from ._parts import KEPT_FOR_THE_PROCESS, call_limit
from .good_http_backendless import GRAIN_SWORKER_CONFIG, HttpEchoClient, grain_run_sworker, service_url

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
_client: HttpEchoClient | None = None


@asynccontextmanager
async def grain_context() -> AsyncIterator[HttpEchoClient]:
    global _client
    if _client is None:  # made once per process, kept for the next instance
        _client = HttpEchoClient(httpx.AsyncClient(base_url=service_url(), timeout=call_limit()))
        KEPT_FOR_THE_PROCESS.append(_client)  # (so that the kit's tests can close it when they are done)
    await _client.echo("ping")  # a wrong address fails here, at the start, not in the first tasklet
    yield _client
