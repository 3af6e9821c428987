"""Known good: a server that runs one job at a time, with a lock around the whole job.

A job is two requests (submit, then fetch the result); the server refuses a
second job until the first one's result is fetched. Holding the lock for the
whole job, not per request, lets V tasklets share the client.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ._parts import HOST, EchoClient, running_echo_server

GRAIN_SWORKER_CONFIG: dict[str, object] = {}
#: Each reply takes this long (a job queue is not instant), so concurrent tasklets surely meet.
JOB_SECONDS = 0.02


class JobClient:
    def __init__(self, connection: EchoClient, *, lock_whole_job: bool = True) -> None:
        self._connection = connection
        self._job_lock = anyio.Lock() if lock_whole_job else None
        self._request_lock = anyio.Lock()

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        async with self._request_lock:
            reply = await self._connection.request(message)
        if "error" in reply:
            raise RuntimeError(f"the server refused: {reply['error']}")
        return reply

    async def _job(self, x: Any) -> Any:
        job = (await self._request({"op": "submit", "x": x}))["job"]
        return (await self._request({"op": "result", "job": job}))["result"]

    async def echo(self, x: Any) -> Any:
        if self._job_lock is None:
            return await self._job(x)
        async with self._job_lock:
            return await self._job(x)

    async def aclose(self) -> None:
        await self._connection.aclose()


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    async with running_echo_server(one_job=True, delay=JOB_SECONDS) as port:
        yield {"name": f"jobs@{HOST}:{port}", "host": HOST, "port": port}


@asynccontextmanager
async def grain_context(host: str, port: int) -> AsyncIterator[JobClient]:
    client = JobClient(await EchoClient.connect(host, port))
    try:
        yield client
    finally:
        await client.aclose()
