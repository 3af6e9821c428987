"""Known good: the server is a ``subprocess.Popen`` started and waited on in worker threads, as sync code does.

Readiness is polled with blocking sockets in a thread (bounded); a thread waits
on the server for as long as it runs (abandoned on cancellation, since a thread
cannot be cancelled); ``finally`` terminates, kills and reaps it, off the loop.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio

from ._parts import HOST, STOP_GRACE, EchoClient, free_port, server_command, wait_listening_blocking

GRAIN_SWORKER_CONFIG: dict[str, object] = {}
READY_TIMEOUT = 10.0
START_DELAY = 0.2


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_GRACE)


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    start = partial(
        subprocess.Popen,
        server_command(port, start_delay=START_DELAY),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    process: subprocess.Popen[bytes] = await anyio.to_thread.run_sync(start)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(partial(anyio.to_thread.run_sync, process.wait, abandon_on_cancel=True))
            ready = partial(wait_listening_blocking, port, process.poll, READY_TIMEOUT)
            await anyio.to_thread.run_sync(ready)
            try:
                yield {"name": f"chem@{HOST}:{port}", "host": HOST, "port": port}
            finally:
                group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_stop, process)


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
