"""Like-for-like server floor: the generated package's own demo server behind a minimal sworker.

Same server process, in a session of its own as the generated sworker starts it
(with Linux's autogroup scheduling a session is what shares the CPU fairly, so this
matters on a busy machine), same protocol (JSON lines, the per-instance secret
first), same connections (one per concurrent tasklet, opened as needed), so it
differs from the generated sworker only in what the generated code adds: its
client's limits, cancellation safety and error reporting, and its server management.
The package comes from ``BENCH_SERVER_PACKAGE`` (bench/run.py sets it).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from subprocess import DEVNULL

import anyio
from anyio.streams.buffered import BufferedByteStream
from grain import GVAR
from grain.delayed import delayed

GRAIN_SWORKER_CONFIG: dict[str, object] = {}
PACKAGE_ENV = "BENCH_SERVER_PACKAGE"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, object]]:
    package = os.environ[PACKAGE_ENV]
    port, secret = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", f"{package}.demo.server", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, f"{package.upper()}_SERVER_SECRET": secret}
    process = await anyio.open_process(
        command, env=env, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL, start_new_session=True
    )
    try:
        with anyio.fail_after(30):
            while True:
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.005)
        yield {"name": f"same-server-floor@127.0.0.1:{port}", "host": "127.0.0.1", "port": port, "secret": secret}
    finally:
        process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()


class PoolClient:
    """The least a correct happy path needs: an idle connection, or a new one."""

    def __init__(self, host: str, port: int, secret: str) -> None:
        self._host, self._port, self._secret = host, port, secret
        self._idle: list[BufferedByteStream] = []
        self._all: list[BufferedByteStream] = []

    async def open(self) -> BufferedByteStream:
        stream = BufferedByteStream(await anyio.connect_tcp(self._host, self._port))
        self._all.append(stream)
        await stream.send(json.dumps({"id": 0, "op": "hello", "secret": self._secret}).encode() + b"\n")
        await stream.receive_until(b"\n", 1 << 20)
        return stream

    async def square(self, x: float) -> float:
        stream = self._idle.pop() if self._idle else await self.open()
        await stream.send(json.dumps({"id": 1, "op": "square", "x": x}).encode() + b"\n")
        reply = json.loads(await stream.receive_until(b"\n", 1 << 20))
        self._idle.append(stream)
        return float(reply["result"])

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for stream in self._all:
                await stream.aclose()


@asynccontextmanager
async def grain_context(host: str, port: int, secret: str) -> AsyncIterator[PoolClient]:
    client = PoolClient(host, port, secret)
    try:
        client._idle.append(await client.open())
        yield client
    finally:
        await client.aclose()


@delayed
async def square(x: float) -> float:
    client: PoolClient = GVAR.context
    return await client.square(x)
