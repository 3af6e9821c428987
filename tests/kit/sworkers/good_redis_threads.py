"""Known good, backendless: the sync redis-py client, every call in a worker thread.

One ``redis.Redis`` with a blocking connection pool per grain_context; each call
runs in a thread (a CapacityLimiter as wide as the pool), so the event loop never
waits on the network. The call limit is the socket timeout, and redis-py does not
retry on its own: a dead or stalled server raises. The pool is closed in finally.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._parts import call_limit, redis_url
from .good_backendless import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "close", "connect", "grain_context", "grain_run_sworker"]
CONNECTIONS = 8


def connect() -> redis.Redis:
    """A sync client: the call limit as socket timeout, no retries of its own, a bounded pool."""
    limit = call_limit()
    pool = redis.BlockingConnectionPool.from_url(
        redis_url(),
        max_connections=CONNECTIONS,
        timeout=limit,
        socket_timeout=limit,
        socket_connect_timeout=limit,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    return redis.Redis(connection_pool=pool)


def close(client: redis.Redis) -> None:
    """Close the client and its pool's connections (a pool passed in is not closed with the client)."""
    client.close()
    client.connection_pool.disconnect()


class ThreadedRedis:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._threads = anyio.CapacityLimiter(CONNECTIONS)

    async def echo(self, x: Any) -> Any:
        call = partial(self._redis.echo, x)
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=self._threads)


@asynccontextmanager
async def grain_context() -> AsyncIterator[ThreadedRedis]:
    client = await anyio.to_thread.run_sync(connect)
    try:
        yield ThreadedRedis(client)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await anyio.to_thread.run_sync(close, client)
