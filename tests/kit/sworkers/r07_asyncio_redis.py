"""Rule 7: redis.asyncio, an asyncio-only client, under trio (otherwise good_redis_threads).

Under trio it fails at once (``There is no current event loop``), and its
connection's ``__del__`` then leaves a coroutine that is never awaited: the kit
must report both under Rule 7, never as a failure of its own. Under asyncio it
works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._parts import call_limit, redis_url
from .good_redis_threads import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_context() -> AsyncIterator[redis.asyncio.Redis]:
    limit = call_limit()
    client = redis.asyncio.Redis.from_url(
        redis_url(),
        socket_timeout=limit,
        socket_connect_timeout=limit,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        await client.ping()
        yield client
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await client.aclose()
