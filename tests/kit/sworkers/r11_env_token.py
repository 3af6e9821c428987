"""Rule 11: the API token, read from the environment in grain_run_sworker, is yielded as a field.

Otherwise good_backendless (grain_context takes the token instead of reading it itself).
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import TOKEN_ENV, EchoClient, service_address
from .good_backendless import GRAIN_SWORKER_CONFIG

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, Any]]:
    yield {"name": "echo-service", "token": os.environ.get(TOKEN_ENV, "")}


@asynccontextmanager
async def grain_context(token: str) -> AsyncIterator[EchoClient]:
    host, port = service_address()
    client = await EchoClient.connect(host, port)
    client.token = token  # type: ignore[attr-defined]  # what the tasklet would authenticate with
    try:
        yield client
    finally:
        await client.aclose()
