"""Rule 8: a one-job-at-a-time server with a lock per request, not per job (otherwise good_one_job).

Each request is safe, but a second tasklet submits its job between the first
one's submit and fetch, and the server refuses it. Passes with Capacity V = 1.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import EchoClient
from .good_one_job import GRAIN_SWORKER_CONFIG, JobClient, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[JobClient]:
    client = JobClient(await EchoClient.connect(host, port), lock_whole_job=False)
    try:
        yield client
    finally:
        await client.aclose()
