"""Rule 7: the client is built on asyncio.open_connection, which fails under trio (otherwise good_server)."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import call_limit
from .good_server import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


class AsyncioEchoClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._lock = asyncio.Lock()
        self._limit = call_limit()

    async def echo(self, x: Any) -> Any:
        async with self._lock, asyncio.timeout(self._limit):
            self._writer.write(json.dumps({"x": x}).encode() + b"\n")
            await self._writer.drain()
            line = await self._reader.readline()
            if not line:
                raise ConnectionError("the echo server closed the connection")
            return json.loads(line)["result"]


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[AsyncioEchoClient]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield AsyncioEchoClient(reader, writer)
    finally:
        writer.close()
