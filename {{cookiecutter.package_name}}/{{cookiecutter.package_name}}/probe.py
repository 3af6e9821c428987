"""The conformance suite's probe: one representative call, the one the tasklet makes."""

from __future__ import annotations

from .client import Client


async def probe(client: Client) -> object:
    """Square a number through ``client``; raises if the service is unreachable."""
    result = await client.square(3.0)
    if result != 9.0:
        raise AssertionError(f"square(3.0) returned {result!r}, expected 9.0")
    return result
