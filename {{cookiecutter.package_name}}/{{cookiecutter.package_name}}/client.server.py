"""Client for the server: JSON lines over one TCP connection.

One client is shared by every tasklet on a sworker instance, up to its capacity
at once, so requests take turns on the connection (a lock), and a lost
connection always raises: an empty reply is never taken for a result.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteStream

MAX_REPLY_BYTES = 1 << 20
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0


class ServerGoneError(ConnectionError):
    """The connection to the server was lost: the server stopped or crashed."""


class RemoteError(RuntimeError):
    """The server received the request and answered with an error."""


class Client:
    """A connection to one server instance, safe for concurrent tasklets."""

    def __init__(self, stream: anyio.abc.ByteStream, address: str) -> None:
        self._stream = BufferedByteStream(stream)
        self._address = address
        self._lock = anyio.Lock()
        self._last_id = 0

    @classmethod
    async def connect(cls, host: str, port: int, secret: str) -> Client:
        """Connect and present the instance's secret (the server refuses others)."""
        address = f"{host}:{port}"
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                stream = await anyio.connect_tcp(host, port)
        except (OSError, TimeoutError) as exc:
            raise ServerGoneError(f"cannot connect to the server at {address}: {exc}") from exc
        client = cls(stream, address)
        try:
            await client.call("hello", secret=secret)
        except BaseException:
            await client.aclose()
            raise
        return client

    async def square(self, x: float) -> float:
        """``x * x``, computed by the server."""
        return float(await self.call("square", x=x))

    async def call(self, op: str, **params: Any) -> Any:
        """Send one request and return its result; raise if the server is gone."""
        async with self._lock:
            self._last_id += 1
            request_id = self._last_id
            request = json.dumps({"id": request_id, "op": op, **params}).encode() + b"\n"
            try:
                await self._stream.send(request)
                reply = await self._reply_to(request_id)
            except (anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise ServerGoneError(
                    f"lost the connection to the server at {self._address} during {op!r}: "
                    f"{type(exc).__name__} {exc}".rstrip()
                ) from exc
        if "error" in reply:
            raise RemoteError(f"server at {self._address} refused {op!r}: {reply['error']}")
        return reply["result"]

    async def _reply_to(self, request_id: int) -> dict[str, Any]:
        while True:
            line = await self._stream.receive_until(b"\n", MAX_REPLY_BYTES)
            reply: dict[str, Any] = json.loads(line)
            # A reply with an older id belongs to a call that was cancelled mid-way.
            if reply.get("id") == request_id:
                return reply

    async def aclose(self) -> None:
        """Close the connection; tolerates a server that is gone already."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            await self._stream.aclose()
