"""Client for the server: HTTP with httpx, the per-instance secret as a bearer token, bounded calls.

One client is shared by every tasklet on a sworker instance, up to its capacity V at
once. httpx keeps a pool of keep-alive connections, unbounded here (Grain bounds the
calls by V), so V calls run at once on V connections; a server that runs one job at a
time is given ``MAX_CONCURRENT_ENV=1`` and the calls take turns. What any protocol's
client needs (limits, errors, turns, the close) is in ``client_support``.

A call is ``POST /<op>`` with its parameters as a JSON object; the reply is
``{"result": ...}``, or an error status with ``{"error": "..."}``. A lost connection
always raises (httpx never retries a request), and so does a server that does not
answer within ``CALL_TIMEOUT_ENV`` seconds: httpx closes the connection of a call that
did not finish, so its late reply never reaches another call.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from .client_support import (
    CONNECT_TIMEOUT,
    DEFAULT_CALL_TIMEOUT,
    RemoteError,
    ServerGoneError,
    close_shielded,
    timed_out,
    turns,
)

#: What the client asks at connect, with the secret: any 2xx means the server is up and takes
#: the secret (the body is not read). Point it at your server's own health route, one that checks
#: the token, so that a wrong secret fails at connect.
HEALTH_PATH = "/health"
CONNECT_CHECK = f"the check at connect (GET {HEALTH_PATH})"
#: Seconds an idle connection is kept for the next call: less than servers keep one (uvicorn 5 s,
#: gunicorn 2 s), so a call is never sent on a connection that the server is closing, where it
#: would fail as if the server were gone. A busy client never lets one idle that long.
KEEPALIVE_EXPIRY = 1.0
#: The most of a reply quoted in an error.
MAX_QUOTED = 200
_JSON = {"Content-Type": "application/json"}


class Client:
    """Connections to one server instance, safe for concurrent tasklets.

    Make it with ``async with Client.connect(...)``: that checks the server and the
    secret first, and closes every connection at the end.
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
        self._address = f"{host}:{port}"
        self._call_timeout = call_timeout
        self._turns = turns(max_concurrent)
        self._http = httpx.AsyncClient(
            base_url=httpx.URL(scheme="http", host=host, port=port),  # brackets an IPv6 address
            headers={"Authorization": f"Bearer {secret}"},
            # The call limit bounds each call as a whole (httpx's own limits are per read, per write).
            timeout=httpx.Timeout(None, connect=min(CONNECT_TIMEOUT, call_timeout)),
            # One connection per call in flight, each kept for the next call: a pool smaller than
            # V would make calls wait for a connection, and closing the extra ones costs a connect.
            limits=httpx.Limits(
                max_connections=max_concurrent,
                max_keepalive_connections=max_concurrent,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            # The head reaches the server it started directly: no proxy or .netrc from the environment.
            trust_env=False,
        )

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
        """A client that has reached the server with the secret: a wrong address or secret fails here,
        in ``grain_context``, not later in a tasklet."""
        client = cls(host, port, secret, call_timeout=call_timeout, max_concurrent=max_concurrent)
        try:
            await client._send("GET", HEALTH_PATH, None, CONNECT_CHECK, min(CONNECT_TIMEOUT, call_timeout))
            yield client
        finally:
            await client.aclose()

    async def square(self, x: float) -> float:
        """``x * x``, computed by the server."""
        return float(await self.call("square", x=x))

    async def call(self, op: str, **params: Any) -> Any:
        """POST ``params`` to ``/<op>``; the reply's result. Raises if the server is gone, stalled or refuses it."""
        async with self._turns:  # waiting for a turn is not part of the call's limit
            response = await self._send("POST", f"/{op}", json.dumps(params).encode(), repr(op), self._call_timeout)
        try:
            reply = response.json()
        except ValueError:
            raise RemoteError(f"server at {self._address} sent a reply to {op!r} that is not JSON") from None
        if not isinstance(reply, dict) or "result" not in reply:
            raise RemoteError(f"server at {self._address} answered {op!r} without a result: {str(reply)[:MAX_QUOTED]}")
        return reply["result"]

    async def _send(self, method: str, path: str, body: bytes | None, what: str, limit: float) -> httpx.Response:
        """One request, within ``limit`` seconds; its response, unless the server is gone, stalled or refuses it."""
        request = self._http.build_request(method, path, content=body, headers=_JSON if body is not None else None)
        request.stream = _Body(body or b"")  # the same bytes, sent without an async generator
        try:
            with anyio.fail_after(limit if math.isfinite(limit) else None):
                response = await self._http.send(request)
        except TimeoutError:
            raise timed_out(self._address, what, limit) from None
        except httpx.ConnectError as exc:
            raise ServerGoneError(f"cannot connect to the server at {self._address} for {what}: {exc}") from exc
        except httpx.TransportError as exc:
            lost = f"lost the connection to the server at {self._address} during {what}"
            raise ServerGoneError(f"{lost}: {type(exc).__name__} {exc}".rstrip()) from exc
        if response.is_error:
            raise RemoteError(self._refusal(response, what))
        return response

    def _refusal(self, response: httpx.Response, what: str) -> str:
        """What the server said when it refused ``what``: its ``error`` text, else the start of its reply."""
        try:
            reply = response.json()
        except ValueError:
            reply = None
        detail = (reply.get("error") if isinstance(reply, dict) else None) or response.text[:MAX_QUOTED]
        status = response.status_code
        refused = f"the secret at {what}" if status in (401, 403) else what
        hint = f"; HEALTH_PATH in {__name__} names the route it asks" if what == CONNECT_CHECK and status == 404 else ""
        return f"server at {self._address} refused {refused}: {detail} (HTTP {status}){hint}"

    async def aclose(self) -> None:
        """Close every connection; tolerates a server that is gone already."""
        await close_shielded(self._http)


class _Body(httpx.AsyncByteStream):
    """A request body, sent in one piece.

    httpx's own body (even a GET's empty one) is an async generator, which trio reports as
    a ResourceWarning when a call is cancelled mid-send (encode/httpx#3686), and pytest's
    ``-W error`` fails the test that cancelled it; this one is a plain iterator.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._data)


class _Once:
    """Yields ``data`` once."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data
