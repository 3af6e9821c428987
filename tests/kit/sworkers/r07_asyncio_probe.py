"""Rule 7: the client works, but a call made the way the probe makes it needs asyncio (otherwise good_backendless)."""

import asyncio
from typing import Any

from ._parts import EchoClient
from .good_backendless import GRAIN_SWORKER_CONFIG, grain_context, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker", "probe", "probe_on_the_loop"]


async def probe(client: EchoClient, variant: int = 0) -> Any:
    await asyncio.sleep(0)  # e.g. an SDK helper written against asyncio, called per request
    return await client.echo(f"probe-{variant}")


async def probe_on_the_loop(client: EchoClient, variant: int = 0) -> Any:
    asyncio.get_running_loop()  # e.g. an SDK that schedules its work on the running asyncio loop
    return await client.echo(f"probe-{variant}")
