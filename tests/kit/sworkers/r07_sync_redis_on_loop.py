"""Rule 7: the sync redis-py client called on the event loop (otherwise good_redis_threads).

On loopback each call takes well under a millisecond, so nothing shows; on a
cluster, with a busy server or a slow network, every call freezes the head for
its whole length. The kit's slow-server round makes that visible here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis

from .good_redis_threads import GRAIN_SWORKER_CONFIG, close, connect, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


class RedisOnTheLoop:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    async def echo(self, x: Any) -> Any:
        return self._redis.echo(x)  # the bug: a blocking network call in async code


@asynccontextmanager
async def grain_context() -> AsyncIterator[RedisOnTheLoop]:
    client = connect()
    try:
        yield RedisOnTheLoop(client)
    finally:
        close(client)
