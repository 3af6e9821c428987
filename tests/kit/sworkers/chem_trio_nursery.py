"""Known good, trio only: a chemistry-style server under ``trio.run_process`` in a nursery, polled until ready.

The shape a computational chemist writes against trio, the library Grain runs:
the server is a task of a nursery (``run_process`` kills it when the nursery is
cancelled), readiness is polled under ``trio.fail_after``, the client is a trio
stream with a ``trio.Lock``. It runs under trio only: under asyncio the kit
reports it as portability ("needs trio"), never as a failure.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from ._parts import HOST, call_limit, free_port, server_command

GRAIN_SWORKER_CONFIG: dict[str, object] = {}
READY_TIMEOUT = 10.0
#: The stand-in for a chemistry code takes a moment to come up.
START_DELAY = 0.2


class ChemClient:
    """One trio stream to the server; one request at a time; EOF raises."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._lock = trio.Lock()
        self._buffer = b""
        self._limit = call_limit()

    async def echo(self, x: Any) -> Any:
        async with self._lock:
            with trio.fail_after(self._limit):  # a stalled server raises TooSlowError
                return await self._exchange(x)

    async def _exchange(self, x: Any) -> Any:
        await self._stream.send_all(json.dumps({"x": x}).encode() + b"\n")
        while b"\n" not in self._buffer:
            data = await self._stream.receive_some()
            if not data:
                raise ConnectionError("the chemistry server closed the connection")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)["result"]


async def _wait_ready(port: int) -> None:
    with trio.fail_after(READY_TIMEOUT):
        while True:
            try:
                stream = await trio.open_tcp_stream(HOST, port)
            except OSError:
                await trio.sleep(0.01)
            else:
                await stream.aclose()
                return


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    command = server_command(port, start_delay=START_DELAY)
    async with trio.open_nursery() as nursery:
        run = partial(
            trio.run_process,
            command,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await nursery.start(run)
        try:
            await _wait_ready(port)
            yield {"name": f"chem@{HOST}:{port}", "host": HOST, "port": port}
        finally:
            nursery.cancel_scope.cancel()  # run_process terminates the server and waits for it


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[ChemClient]:
    with trio.fail_after(READY_TIMEOUT):
        stream = await trio.open_tcp_stream(host, port)
    try:
        yield ChemClient(stream)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await stream.aclose()
