"""Rule 7: the first call fetches a token synchronously (0.9 s, blocking the loop once; otherwise good_backendless).

A one-off stall: every later call reuses the token, so only a watcher that sees
the first call, and counts a stall that happens once, catches it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._parts import EchoClient, service_address
from .good_backendless import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
TOKEN_DELAY = 0.9


def fetch_token(host: str, port: int) -> str:
    """A sync token request, as an SDK's auth helper makes it (blocking socket I/O)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(json.dumps({"op": "token", "delay": TOKEN_DELAY}).encode() + b"\n")
        reply = sock.makefile("rb").readline()
    token: str = json.loads(reply)["token"]
    return token


class TokenClient(EchoClient):
    token: str | None = None
    address: tuple[str, int] = ("", 0)

    async def echo(self, x: Any) -> Any:
        if self.token is None:
            self.token = fetch_token(*self.address)  # the bug: sync I/O on the event loop, once
        return await super().echo(x)


@asynccontextmanager
async def grain_context() -> AsyncIterator[TokenClient]:
    host, port = service_address()
    client = await TokenClient.connect(host, port)
    client.address = (host, port)
    try:
        yield client
    finally:
        await client.aclose()
