"""Known good: a chemistry-style server under ``anyio.open_process``, watched by a task while it runs.

A task of the instance's task group waits on the server and raises if it exits
early (as ``run_process(check=True)`` would); readiness is bounded; in
``finally`` the watcher is cancelled and the server terminated, killed and
reaped. Written against anyio, it runs under trio and asyncio alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import Process

from ._parts import HOST, EchoClient, free_port, start_server, stop_server, wait_listening

GRAIN_SWORKER_CONFIG: dict[str, object] = {}
START_DELAY = 0.2


async def _watch(process: Process) -> None:
    code = await process.wait()
    raise RuntimeError(f"the chemistry server exited with code {code} while in use")


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    process = await start_server(port, start_delay=START_DELAY)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_watch, process)
            try:
                await wait_listening(process, port)
                yield {"name": f"chem@{HOST}:{port}", "host": HOST, "port": port}
            finally:
                group.cancel_scope.cancel()
    finally:
        await stop_server(process)


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
