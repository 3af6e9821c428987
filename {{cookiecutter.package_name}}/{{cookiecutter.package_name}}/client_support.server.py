"""What every client of the server shares, whatever its protocol: generic, keep it.

``client.py`` holds only what your server's protocol needs; it takes from here the
limits set in the head's environment, the three errors a tasklet may see (the server
is gone, it timed out, it refused the call), taking turns for a server that runs one
job at a time, a close that still runs while Grain cancels the instance, and, for a
client library that is sync or asyncio-only, calls in worker threads that a
cancellation abandons (see README.md, "A sync or asyncio-only client library").
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import anyio

#: Seconds one call may take, from sending the request to its reply (the head's environment).
CALL_TIMEOUT_ENV = "{{ cookiecutter.package_name | upper }}_CALL_TIMEOUT"
#: An hour: long jobs fit, and a stalled server still fails its calls in the end.
DEFAULT_CALL_TIMEOUT = 3600.0
#: How many requests one server instance is sent at once (the head's environment); unset: as
#: many as tasklets make, which Grain bounds by the instance's Capacity V.
MAX_CONCURRENT_ENV = "{{ cookiecutter.package_name | upper }}_MAX_CONCURRENT"
#: Opening (and authenticating) a connection is quick, however long the calls take.
CONNECT_TIMEOUT = 10.0
#: Closing the client's connections on the way out never takes longer than this.
CLOSE_TIMEOUT = 5.0
#: How many worker threads one client's blocking calls may hold at once, unless
#: ``MAX_CONCURRENT_ENV`` says fewer: more than any V a server runs well (Grain's V bounds the calls).
DEFAULT_THREADS = 64

T = TypeVar("T")


class ServerGoneError(ConnectionError):
    """The connection to the server was lost or refused: the server stopped or crashed."""


class ServerTimeoutError(TimeoutError):
    """The server did not answer in time: it is stalled, or the job outgrew the call limit."""


class RemoteError(RuntimeError):
    """The server received the request and answered with an error."""


def call_timeout() -> float:
    """The per-call limit in seconds, from ``CALL_TIMEOUT_ENV`` (``inf``: no limit)."""
    raw = os.environ.get(CALL_TIMEOUT_ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_CALL_TIMEOUT
    except ValueError:
        seconds = math.nan
    if not seconds > 0:  # also rejects nan
        raise ValueError(f"{CALL_TIMEOUT_ENV}={raw!r} is not a positive number of seconds")
    return seconds


def max_concurrent() -> int | None:
    """The most requests sent to one server at once, from ``MAX_CONCURRENT_ENV``; None: no limit."""
    raw = os.environ.get(MAX_CONCURRENT_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{MAX_CONCURRENT_ENV}={raw!r} is not a positive whole number")
    return int(raw)


def turns(limit: int | None) -> AbstractAsyncContextManager[Any]:
    """What a call holds while it runs: one of ``limit`` turns (the rest wait), or nothing when None.

    Waiting for a turn is not part of a call's time limit: enter the turn, then start the clock.
    """
    if limit is None:
        return contextlib.nullcontext()
    return anyio.Semaphore(limit, fast_acquire=True)


def timed_out(address: str, what: str, limit: float) -> ServerTimeoutError:
    """The error of a call that got no answer within ``limit`` seconds, naming the setting to change."""
    return ServerTimeoutError(
        f"the server at {address} did not answer {what} within {limit:g} s "
        f"(the limit is {CALL_TIMEOUT_ENV}): it is stalled, or the job needs a longer limit"
    )


class Closable(Protocol):
    async def aclose(self) -> None: ...


async def close_shielded(resource: Closable) -> None:
    """Close ``resource`` even while the caller is being cancelled (Grain stops an instance so), within
    ``CLOSE_TIMEOUT``: a server that is gone or stalled cannot hold the head's teardown."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
        await resource.aclose()


async def in_thread(limiter: anyio.CapacityLimiter, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call in a worker thread, so the head's event loop goes on meanwhile.

    A cancelled call returns at once and abandons its thread, which ends when the blocking
    call does: bound that with the library's own socket timeout (the call limit). The thread
    holds its place in ``limiter`` until it ends, so no more than its size ever reach the server.
    """
    call = functools.partial(function, *args, **kwargs)
    return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=limiter)
