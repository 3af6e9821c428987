"""Known good: the seed documentation page's example shape, with its cleanup where Grain runs it.

The page shows ``GRAIN_SWORKER_CONFIG = dict()``, a grain_run_sworker that sets
up a server and yields ``dict(name=..., ...)``, and ``grain_context(**kwargs)``;
its "clean up" lines come after the ``yield``, where they never run under
Grain's cancellation. Here they are in ``finally:``.
"""

from contextlib import asynccontextmanager

from ._parts import HOST, EchoClient, free_port, start_server, stop_server, wait_listening

GRAIN_SWORKER_CONFIG = dict()  # as the page writes it


@asynccontextmanager
async def grain_run_sworker():
    # set up server
    port = free_port()
    process = await start_server(port)
    try:
        await wait_listening(process, port)
        yield dict(name=f"seed@{HOST}:{port}", host=HOST, port=port)
    finally:
        # clean up server
        await stop_server(process)


@asynccontextmanager
async def grain_context(**kwargs):
    # `kwargs`, if any, are received from the corresponding `grain_run_sworker`
    client = await EchoClient.connect(kwargs["host"], kwargs["port"])
    try:
        yield client
    finally:
        # clean up client
        await client.aclose()
