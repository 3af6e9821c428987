"""Rule 10: the client answers a reset connection with "" (otherwise good_server).

EOF still raises here; only a dead server that resets the connection is taken
for an empty answer, so only the kit's reset scenario shows it.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import EchoClient
from .good_server import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port, swallow_reset=True)
    try:
        yield client
    finally:
        await client.aclose()
