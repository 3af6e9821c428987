"""Rule 6: the seed page's shape filled in the obvious way: ``subprocess.Popen``, a trio sleep, cleanup after yield.

Under trio (Grain) the cleanup after the bare ``yield`` never runs: the server is
orphaned. Under asyncio (the kit's portability run) ``trio.sleep`` fails just
after the server was spawned: whatever stage fails, the kit must reap it.
"""

import subprocess
from contextlib import asynccontextmanager
from functools import partial

import anyio
import trio

from ._parts import HOST, EchoClient, free_port, server_command, wait_listening_blocking

GRAIN_SWORKER_CONFIG = dict()


@asynccontextmanager
async def grain_run_sworker():
    # set up server
    port = free_port()
    process = subprocess.Popen(server_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    await trio.sleep(0.05)  # give it a moment (trio only)
    await anyio.to_thread.run_sync(partial(wait_listening_blocking, port, process.poll))
    yield dict(name=f"seed@{HOST}:{port}", host=HOST, port=port)
    # clean up server
    process.terminate()
    process.wait()


@asynccontextmanager
async def grain_context(host, port):
    client = await EchoClient.connect(host, port)
    try:
        yield client
    finally:
        await client.aclose()
