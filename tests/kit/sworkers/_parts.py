"""Building blocks shared by the corpus: the echo server as a child process, its client, the probe.

Each sworker module in this package is small and spells out the part the kit
judges; a broken module differs from ``good_server`` or ``good_backendless`` in
one way. Only anyio is used, so the good modules run under trio and asyncio.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.abc import ByteStream, Process

T = TypeVar("T")
ECHO_SERVER = Path(__file__).with_name("echo_server.py")
HOST = "127.0.0.1"
#: Backendless modules find their service here ("host:port"), read inside grain_context.
ADDRESS_ENV = "KIT_ECHO_ADDRESS"
#: A long-lived credential, as a real backendless service would have.
TOKEN_ENV = "KIT_API_TOKEN"
TOKEN = "kit-token-0123456789abcdef"
#: When set, added to the server's command line so that a test can find the processes of its run.
TAG_ENV = "KIT_RUN_TAG"
STARTUP_TIMEOUT = 10.0
STOP_GRACE = 2.0
#: Where the corpus's clients read their call limit (seconds) when they start: the kit sets it
#: (--sworker-call-limit-env) to the limit it is told, so that a stalled call ends in time (rule 13).
CALL_LIMIT_ENV = "KIT_CALL_LIMIT"
DEFAULT_CALL_LIMIT = 10.0
#: Sockets the leaky corpus modules never close (the tests close them afterwards).
LEAKED: list[socket.socket] = []
#: Clients a module keeps for the whole process (one per process is fine on Grain): the tests close them.
KEPT_FOR_THE_PROCESS: list[Any] = []


def call_limit() -> float:
    """The limit on one call, from ``CALL_LIMIT_ENV``, read when a client starts."""
    return float(os.environ.get(CALL_LIMIT_ENV) or DEFAULT_CALL_LIMIT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(
    port: int,
    *,
    silent: bool = False,
    delay: float = 0.0,
    start_delay: float = 0.0,
    one_job: bool = False,
    max_in_flight: int = 0,
    retry_after: float = 0.0,
) -> list[str]:
    command = [sys.executable, str(ECHO_SERVER), "--host", HOST, "--port", str(port)]
    if max_in_flight:
        command += ["--max-in-flight", str(max_in_flight)]
    if retry_after:
        command += ["--retry-after", str(retry_after)]
    if silent:
        command.append("--silent")
    if delay:
        command += ["--delay", str(delay)]
    if start_delay:
        command += ["--start-delay", str(start_delay)]
    if one_job:
        command.append("--one-job")
    if tag := os.environ.get(TAG_ENV):
        command += ["--tag", tag]
    return command


async def start_server(port: int, **options: Any) -> Process:
    """The echo server as a child process in a session of its own (``options``: see ``server_command``)."""
    return await anyio.open_process(
        server_command(port, **options),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def poll_until_listening(process: Process, port: int) -> None:
    """Connect until the server accepts; raise if it exits. No time limit of its own."""
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"the echo server exited with code {process.returncode} before listening")
        try:
            stream = await anyio.connect_tcp(HOST, port)
        except OSError:
            await anyio.sleep(0.01)
        else:
            await stream.aclose()
            return


async def wait_listening(process: Process, port: int, seconds: float = STARTUP_TIMEOUT) -> None:
    """Readiness, bounded: raise when the server does not listen within ``seconds``."""
    try:
        with anyio.fail_after(seconds):
            await poll_until_listening(process, port)
    except TimeoutError:
        raise RuntimeError(f"the echo server did not listen on {HOST}:{port} within {seconds:g} s") from None


@asynccontextmanager
async def running_echo_server(**options: Any) -> AsyncIterator[int]:
    """The good server lifecycle, yielding the port: free port, start, bounded readiness; stopped in finally."""
    port = free_port()
    process = await start_server(port, **options)
    try:
        await wait_listening(process, port)
        yield port
    finally:
        await stop_server(process)


async def stop_server(process: Process) -> None:
    """Terminate the server's group, kill it after a grace period, reap it (shielded, bounded)."""
    with anyio.CancelScope(shield=True):
        _signal_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(STOP_GRACE):
            await process.wait()
        _signal_group(process.pid, signal.SIGKILL)
        with anyio.move_on_after(STOP_GRACE):
            await process.wait()


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class EchoClient:
    """One connection to the echo server; the good form takes a lock, raises on EOF and bounds each call.

    The keyword switches exist for the broken modules, each of which turns one off
    or adds one fault.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        lock: bool = True,
        eof_raises: bool = True,
        blocking: float = 0.0,
        block_after_reply: float = 0.0,
        swallow_reset: bool = False,
        limit: float | None = None,
    ):
        self._stream = stream
        self._limit = call_limit() if limit is None else limit
        self._lock = anyio.Lock() if lock else None
        self._eof_raises = eof_raises
        self._blocking = blocking
        self._block_after_reply = block_after_reply
        self._swallow_reset = swallow_reset
        self._buffer = b""

    @classmethod
    async def connect(cls, host: str, port: int, **options: Any) -> EchoClient:
        with anyio.fail_after(STARTUP_TIMEOUT):
            stream = await anyio.connect_tcp(host, port)
        return cls(stream, **options)

    async def echo(self, x: Any) -> Any:
        if self._lock is None:
            return await self._bounded(self._exchange(x))
        async with self._lock:
            return await self._bounded(self._exchange(x))

    async def _bounded(self, call: Awaitable[T]) -> T:
        """``call``, or TimeoutError naming the limit: a stalled server ends the call, not the head."""
        with anyio.move_on_after(self._limit):
            return await call
        await self.aclose()  # its reply may still come: this connection is not reused
        raise TimeoutError(f"the echo server did not answer within {self._limit:g} s ({CALL_LIMIT_ENV})")

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """One JSON-lines request and its reply (no lock: the caller holds what it needs)."""
        return await self._bounded(self._request(message))

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        await self._stream.send(json.dumps(message).encode() + b"\n")
        while b"\n" not in self._buffer:
            try:
                self._buffer += await self._stream.receive()
            except anyio.EndOfStream:
                raise ConnectionError("the echo server closed the connection") from None
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def _exchange(self, x: Any) -> Any:
        if self._blocking:
            time.sleep(self._blocking)  # noqa: ASYNC251  (the broken form: blocks the event loop)
        try:
            await self._stream.send(json.dumps({"x": x}).encode() + b"\n")
            while b"\n" not in self._buffer:
                try:
                    self._buffer += await self._stream.receive()
                except anyio.EndOfStream:
                    if not self._eof_raises:
                        return ""  # the broken form: EOF taken for an (empty) answer
                    raise ConnectionError("the echo server closed the connection") from None
        except (anyio.BrokenResourceError, ConnectionResetError):
            if self._swallow_reset:
                return ""  # the broken form: a reset connection answered with a default
            raise
        line, _, self._buffer = self._buffer.partition(b"\n")
        if self._block_after_reply:
            time.sleep(self._block_after_reply)  # noqa: ASYNC251  (the broken form: sync work per reply)
        return json.loads(line)["result"]

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE):
            await self._stream.aclose()


@asynccontextmanager
async def connected(host: str, port: int, **options: Any) -> AsyncIterator[EchoClient]:
    client = await EchoClient.connect(host, port, **options)
    try:
        yield client
    finally:
        await client.aclose()


def service_address() -> tuple[str, int]:
    """Where a backendless module's service is (``ADDRESS_ENV``)."""
    address = os.environ.get(ADDRESS_ENV, "")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RuntimeError(f"set {ADDRESS_ENV} to the echo service's host:port (got {address!r})")
    return host, int(port)


async def probe(client: EchoClient, variant: int = 0) -> Any:
    """One representative call; a wrong answer (an empty one, a crossed reply) raises AssertionError."""
    sent = f"probe-{variant}"
    got = await client.echo(sent)
    if got != sent:
        raise AssertionError(f"echo({sent!r}) returned {got!r}")
    return got


@contextmanager
def echo_service(delay: float = 0.0, **options: Any) -> Iterator[dict[str, str]]:
    """The echo server as a stand-alone service (what a backendless module talks to)."""
    port = free_port()
    process = subprocess.Popen(
        server_command(port, delay=delay, **options),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_listening_blocking(port, process.poll)
        yield {ADDRESS_ENV: f"{HOST}:{port}"}
    finally:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def wait_listening_blocking(port: int, exited: Any = lambda: None, seconds: float = STARTUP_TIMEOUT) -> None:
    """Readiness for sync code (a service, or a server watched from a thread): bounded, raises if it exits."""
    deadline = time.monotonic() + seconds
    while True:
        if exited() is not None:
            raise RuntimeError("the echo server exited before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the echo server did not listen on {HOST}:{port} within {seconds:g} s")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)


@contextmanager
def one_job_service() -> Iterator[dict[str, str]]:
    """An echo service that runs one job at a time (submit, then fetch the result)."""
    with echo_service(one_job=True) as env:
        yield env


#: Where the redis modules find their redis-server ("redis://host:port/0"), read inside grain_context.
REDIS_URL_ENV = "KIT_REDIS_URL"


@contextmanager
def redis_service() -> Iterator[dict[str, str]]:
    """A redis-server on loopback (Debian's ``redis-server``), no persistence, for the redis modules."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    if tag := os.environ.get(TAG_ENV):
        command += ["--always-show-logo", "no", "--loglevel", "warning", "--dbfilename", f"{tag}.rdb"]
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server") from None
    try:
        wait_listening_blocking(port, process.poll)
        yield {REDIS_URL_ENV: f"redis://{HOST}:{port}/0"}
    finally:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def redis_url() -> str:
    url = os.environ.get(REDIS_URL_ENV, "")
    if not url:
        raise RuntimeError(f"set {REDIS_URL_ENV} to the redis server's URL")
    return url


@contextmanager
def rate_limited_service() -> Iterator[dict[str, str]]:
    """An HTTP echo service that lets 2 requests be in flight and refuses more (HTTP 429); each takes 50 ms."""
    with echo_service(delay=0.05, max_in_flight=2) as env:
        yield env


@contextmanager
def rate_limited_service_retry_after() -> Iterator[dict[str, str]]:
    """The rate-limited service, whose refusals say ``Retry-After: 30``."""
    with echo_service(delay=0.05, max_in_flight=2, retry_after=30) as env:
        yield env


@contextmanager
def echo_service_with_token() -> Iterator[dict[str, str]]:
    """The echo service and the credential a backendless module would read from the environment."""
    with echo_service() as env:
        yield {**env, TOKEN_ENV: TOKEN}
