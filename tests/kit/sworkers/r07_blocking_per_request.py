"""Rule 7: every request blocks the event loop for 0.2 s, after its reply (otherwise good_backendless).

E.g. sync post-processing or a sync log flush per reply: it comes at the end of
each call, where a watcher that reads its record as the calls return misses it.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import EchoClient, service_address
from .good_backendless import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
BLOCKING_SECONDS = 0.2


@asynccontextmanager
async def grain_context() -> AsyncIterator[EchoClient]:
    host, port = service_address()
    client = await EchoClient.connect(host, port, block_after_reply=BLOCKING_SECONDS)
    try:
        yield client
    finally:
        await client.aclose()
