"""Client for the server: JSON lines over TCP, a pool of connections, bounded calls.

One client is shared by every tasklet on a sworker instance, up to its capacity
V at once. Each call borrows a connection of its own (opening one when none is
idle), so V calls run at once when the server can serve them; a server that runs
one job at a time is given ``MAX_CONCURRENT_ENV=1`` and the calls take turns.
What any protocol's client needs (limits, errors, turns, the close) is in ``client_support``.

A connection whose call did not finish (cancelled, timed out, broken) is
closed, never reused: its late reply would otherwise be read by the next call.
A lost connection always raises (an empty reply is never taken for a result),
and so does a server that does not answer within ``CALL_TIMEOUT_ENV`` seconds.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteStream

from .client_support import (
    CALL_TIMEOUT_ENV,
    CONNECT_TIMEOUT,
    DEFAULT_CALL_TIMEOUT,
    RemoteError,
    ServerGoneError,
    ServerTimeoutError,
    close_shielded,
    timed_out,
    turns,
)

MAX_REPLY_BYTES = 1 << 20
#: How often the watchdog looks at the calls in flight, at most (it also wakes at each deadline).
WATCH_INTERVAL = 1.0

_TRANSPORT_ERRORS = (
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.DelimiterNotFound,
    OSError,
)


class Client:
    """Connections to one server instance, safe for concurrent tasklets.

    Make it with ``async with Client.connect(...)``: that also runs the watchdog
    that enforces the call limit, and closes every connection at the end.
    """

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        *,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        max_concurrent: int | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._secret = secret
        self._address = f"{host}:{port}"
        self._call_timeout = call_timeout
        self._ids = itertools.count(1)
        self._idle: list[BufferedByteStream] = []
        self._connections: set[BufferedByteStream] = set()  # idle or in use: aclose closes them all
        # Calls in flight; the watchdog removes the entry of a call past its limit (it has expired).
        self._deadlines: dict[BufferedByteStream, float] = {}
        self._turns = turns(max_concurrent)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        host: str,
        port: int,
        secret: str,
        *,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        max_concurrent: int | None = None,
    ) -> AsyncIterator[Client]:
        """A client with its first connection open: a wrong address or secret fails here, not in a tasklet."""
        client = cls(host, port, secret, call_timeout=call_timeout, max_concurrent=max_concurrent)
        raised: BaseException | None = None
        try:
            client._idle.append(await client._open_connection())
            async with anyio.create_task_group() as watchdog:
                if math.isfinite(call_timeout):
                    watchdog.start_soon(client._expire_stalled_calls)
                try:
                    yield client
                except BaseException as exc:
                    # Handed on below, as it was: raised here, the task group would wrap it in a group.
                    raised = exc
                finally:
                    watchdog.cancel_scope.cancel()
        finally:
            await client.aclose()
        if raised is not None:
            raise raised

    async def square(self, x: float) -> float:
        """``x * x``, computed by the server."""
        return float(await self.call("square", x=x))

    async def call(self, op: str, **params: Any) -> Any:
        """Send one request and return its result; raise if the server is gone, stalled or refuses it."""
        async with self._turns:  # waiting for a turn is not part of the call's limit
            reply = await self._exchange(op, params)
        if "error" in reply or "result" not in reply:
            raise RemoteError(f"server at {self._address} refused {op!r}: {reply.get('error', reply)}")
        return reply["result"]

    async def _exchange(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids)
        request = _encode(request_id, op, params)
        stream = self._idle.pop() if self._idle else await self._open_connection()
        # The watchdog keeps the limit, not a cancel scope per call: measured on loopback, a
        # scope per call added 40 % to the client's CPU time per call (~50 us on a 2-core VM).
        self._deadlines[stream] = anyio.current_time() + self._call_timeout
        reply: object = None
        in_step = False
        try:
            await stream.send(request)
            reply = json.loads(await stream.receive_until(b"\n", MAX_REPLY_BYTES))
            in_step = isinstance(reply, dict) and reply.get("id") == request_id
        except _TRANSPORT_ERRORS as exc:
            if stream not in self._deadlines:  # the watchdog expired the call and closed its connection
                raise timed_out(self._address, repr(op), self._call_timeout) from None
            raise ServerGoneError(
                f"lost the connection to the server at {self._address} during {op!r}: "
                f"{type(exc).__name__} {exc}".rstrip()
            ) from exc
        except ValueError as exc:
            raise RemoteError(f"server at {self._address} sent a reply to {op!r} that is not JSON") from exc
        finally:
            expired = self._deadlines.pop(stream, None) is None
            if in_step and not expired:
                self._idle.append(stream)
            else:  # cancelled, timed out or broken mid-call: its reply must never reach another call
                await self._discard(stream)
        if not in_step or not isinstance(reply, dict):
            raise RemoteError(f"server at {self._address} answered {op!r} out of step: {reply!r}")
        return reply

    async def _expire_stalled_calls(self) -> None:
        """Close the connection of every call past its limit: that call then raises ServerTimeoutError."""
        while True:
            now = anyio.current_time()
            stalled = [stream for stream, deadline in self._deadlines.items() if deadline <= now]
            # Expire them all before the first close yields: meanwhile a call may end, or its
            # connection serve a new call, whose deadline must stay.
            for stream in stalled:
                del self._deadlines[stream]
            pause = min([WATCH_INTERVAL, self._call_timeout, *(d - now for d in self._deadlines.values())])
            for stream in stalled:
                await close_shielded(stream)  # wakes the call, which finds its deadline gone: it expired
            await anyio.sleep(pause)

    async def _open_connection(self) -> BufferedByteStream:
        """A new connection that has presented the instance's secret."""
        limit = min(CONNECT_TIMEOUT, self._call_timeout)
        try:
            with anyio.fail_after(limit):
                stream = BufferedByteStream(await anyio.connect_tcp(self._host, self._port))
        except (OSError, TimeoutError) as exc:
            raise ServerGoneError(f"cannot connect to the server at {self._address}: {exc}") from exc
        self._connections.add(stream)
        try:
            with anyio.fail_after(limit):
                await stream.send(_encode(0, "hello", {"secret": self._secret}))
                reply = json.loads(await stream.receive_until(b"\n", MAX_REPLY_BYTES))
            if "error" in reply:
                raise RemoteError(f"server at {self._address} refused the connection: {reply['error']}")
        except BaseException as exc:
            await self._discard(stream)
            if isinstance(exc, TimeoutError):  # before the transport errors: it is an OSError too
                raise ServerTimeoutError(
                    f"the server at {self._address} accepted a connection but did not answer within {limit:g} s "
                    f"(the limit is {CALL_TIMEOUT_ENV}, at most {CONNECT_TIMEOUT:g} s for a new connection)"
                ) from None
            if isinstance(exc, _TRANSPORT_ERRORS):
                raise ServerGoneError(
                    f"lost a new connection to the server at {self._address}: {type(exc).__name__} {exc}".rstrip()
                ) from exc
            raise
        return stream

    async def _discard(self, stream: BufferedByteStream) -> None:
        """Forget one connection and close it."""
        self._connections.discard(stream)
        await close_shielded(stream)

    async def aclose(self) -> None:
        """Close every connection; tolerates a server that is gone already."""
        self._idle.clear()
        for stream in list(self._connections):
            await self._discard(stream)


def _encode(request_id: int, op: str, params: dict[str, Any]) -> bytes:
    """One request, as a JSON line."""
    return json.dumps({"id": request_id, "op": op, **params}).encode() + b"\n"
