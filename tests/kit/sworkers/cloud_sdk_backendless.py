"""Known good, backendless: a cloud SDK (sync, configured at import) used from async code.

The SDK reads its endpoint and token from the environment when it is imported
(``_cloudsdk.SETTINGS``); grain_context builds one SDK client and each call runs
it in a worker thread, so the event loop never blocks. The token stays on the
head, inside the SDK: nothing credential-like is yielded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio

from ._cloudsdk import Service

GRAIN_SWORKER_CONFIG = {"BACKENDLESS": True}


class AsyncService:
    """The SDK client for tasklets: every blocking call in a worker thread."""

    def __init__(self, service: Service) -> None:
        self._service = service

    async def echo(self, x: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(self._service.echo, x))


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    yield {"name": "cloud-service"}


@asynccontextmanager
async def grain_context() -> AsyncIterator[AsyncService]:
    service = await anyio.to_thread.run_sync(Service)
    try:
        yield AsyncService(service)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(service.close)
