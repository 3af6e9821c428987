"""Server floor: a minimal trio echo sworker with no subprocess.

``grain_run_sworker`` serves a line-echo protocol from a task in the worker
process itself, so nothing is started, polled or reaped: what remains is the
cost of Grain plus one loopback round trip per tasklet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteStream
from grain import GVAR
from grain.delayed import delayed

GRAIN_SWORKER_CONFIG: dict[str, object] = {}


async def _echo(stream: SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send(data)


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, object]]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, _echo)
        try:
            yield {
                "name": f"echo-floor@127.0.0.1:{port}",
                "host": "127.0.0.1",
                "port": port,
            }
        finally:
            group.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await listener.aclose()


class EchoClient:
    def __init__(self, stream: BufferedByteStream) -> None:
        self._stream = stream
        self._lock = anyio.Lock()

    async def square(self, x: float) -> float:
        async with self._lock:
            await self._stream.send(f"{x}\n".encode())
            line = await self._stream.receive_until(b"\n", 1024)
        value = float(line)
        return value * value


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    stream = BufferedByteStream(await anyio.connect_tcp(host, port))
    try:
        yield EchoClient(stream)
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()


@delayed
async def square(x: float) -> float:
    client: EchoClient = GVAR.context
    return await client.square(x)
