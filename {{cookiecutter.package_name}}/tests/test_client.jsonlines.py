"""The JSON-lines client: V calls at once, one job at a time when asked, cancellation, dead and stalled servers.

Its servers are written here, one JSON-lines script with a behaviour per test, so these tests
hold whatever server ``SERVER_COMMAND`` runs. They test ``client.py`` as the template ships it:
if you replace it, rewrite them for your client (or delete this file). Every process a test
starts is ended by its pid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from lifecycle_support import start_and_connect, suspend
from server_support import the_server, use_server

from {{ cookiecutter.package_name }}.client import Client
from {{ cookiecutter.package_name }}.client_support import (
    CALL_TIMEOUT_ENV,
    MAX_CONCURRENT_ENV,
    RemoteError,
    ServerGoneError,
    ServerTimeoutError,
)

pytestmark = pytest.mark.usefixtures("local_addresses", "nothing_left_behind")

BACKENDS = ["trio", "asyncio"]  # Grain runs trio; the client is anyio code and runs under both
#: A JSON-lines server for these tests: it answers the greeting, then each ``echo`` request with its
#: ``value``, as argv[3] says (no braces: the parts of SERVER_COMMAND are filled in with str.format):
#: ``echo MS`` after MS milliseconds; ``one-job``: one request at a time, "busy" to another; ``counting``:
#: each request held until 8 are in flight (at most 5 s), and ``peak`` tells the most seen at once (8 only
#: if the client sent 8 at once, however busy the machine); ``reset``: the first request resets (RST) the
#: connection.
SERVER = """
import json, socket, socketserver, struct, sys, threading, time
behaviour, delay = sys.argv[3], float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.0
busy, lock, all_in = threading.Lock(), threading.Lock(), threading.Barrier(8)
now = [0, 0]  # in flight, peak


def answer(request):
    if behaviour == "one-job":
        if not busy.acquire(blocking=False):
            return dict(error="busy: this server runs one job at a time")
        try:
            time.sleep(0.02)
        finally:
            busy.release()
    elif behaviour == "counting":
        if request["op"] == "peak":
            return dict(result=now[1])
        with lock:
            now[0] += 1
            now[1] = max(now)
        try:
            all_in.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        with lock:
            now[0] -= 1
    time.sleep(delay)
    return dict(result=request["value"])


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            request = json.loads(line)
            if request["op"] == "hello":
                reply = dict(result="hello")
            elif behaviour == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            else:
                reply = answer(request)
            reply["id"] = request.get("id")
            self.wfile.write(json.dumps(reply).encode() + b"\\n")


socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""


def connections_to(port: int) -> int:
    """This process's open connections to ``port``."""
    return sum(
        1
        for conn in psutil.Process().net_connections("tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


async def outcomes(client: Client, values: list[float]) -> dict[float, object]:
    """Every value echoed at once, each call in its own task as V tasklets call: its result or its error."""
    found: dict[float, object] = {}

    async def one(value: float) -> None:
        try:
            found[value] = await client.call("echo", value=value)
        except Exception as exc:
            found[value] = exc

    async with anyio.create_task_group() as group:
        for value in values:
            group.start_soon(one, value)
    return found


def echoed(values: list[float]) -> dict[float, object]:
    return {value: value for value in values}


# --- V at once, or one at a time --------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_v_calls_run_at_once_and_each_gets_its_own_reply(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, SERVER, "counting")
    values = [float(x) for x in range(8)]

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            port = fields["port"]
            assert await outcomes(client, values) == echoed(values)
            assert await client.call("peak") == len(values), "the server never had all 8 requests at once"
            opened = connections_to(port)
            assert opened == len(values), f"{opened} connections for 8 calls at once"  # kept for the next ones
            assert await outcomes(client, values) == echoed(values)
            assert connections_to(port) == opened, "connections were reopened, not reused"

    anyio.run(main, backend=backend)


def test_one_job_at_a_time_gives_right_results_at_any_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, SERVER, "one-job")
    monkeypatch.setenv(MAX_CONCURRENT_ENV, "1")
    values = [float(x) for x in range(16)]

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            assert await outcomes(client, values) == echoed(values)  # 16 tasklets at once, no "busy"
            assert connections_to(fields["port"]) == 1

    anyio.run(main, backend="trio")


def test_without_the_setting_a_one_job_server_refuses_concurrent_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of the test above: it is the setting that keeps such a server's results right."""
    use_server(monkeypatch, SERVER, "one-job")
    monkeypatch.delenv(MAX_CONCURRENT_ENV, raising=False)

    async def main() -> None:
        async with start_and_connect() as (client, _):
            found = await outcomes(client, [float(x) for x in range(8)])
            refused = [error for error in found.values() if isinstance(error, RemoteError)]
            assert refused and all("busy" in str(error) for error in refused), found

    anyio.run(main, backend="trio")


# --- cancellation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancelled_calls_never_leave_a_connection_out_of_step(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, SERVER, "echo", "5")

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            for i in range(40):  # cancelled before sending, while waiting for the reply, just after it
                with anyio.move_on_after(0.002 * (i % 8)):
                    await outcomes(client, [float(i), float(i + 100), float(i + 200), float(i + 300)])
            # A connection cancelled mid-call was closed: its late reply cannot reach these calls.
            values = [float(x) for x in range(4)]
            assert await outcomes(client, values) == echoed(values)
            assert connections_to(fields["port"]) <= 4

    anyio.run(main, backend=backend)


def test_an_error_inside_the_client_block_comes_out_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, SERVER, "echo")

    async def main() -> None:
        with pytest.raises(KeyError, match="raised in the block"):
            async with start_and_connect():
                raise KeyError("raised in the block")

    anyio.run(main, backend="trio")


# --- dead servers (rule 10: EOF and reset are errors, never results) ---------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_call_after_the_server_is_killed_raises_the_first_one_too(
    backend: str, monkeypatch: pytest.MonkeyPatch, server_log_dir: Path
) -> None:
    use_server(monkeypatch, SERVER, "echo")

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            values = [float(x) for x in range(4)]
            assert await outcomes(client, values) == echoed(values)  # 4 idle connections now
            server = the_server(server_log_dir)
            server.kill()
            server.wait(5)
            for attempt in range(6):  # the 4 idle connections (EOF), then new ones (refused)
                with pytest.raises(ServerGoneError, match=f"127.0.0.1:{fields['port']}"):
                    result = await client.call("echo", value=3.0)
                    pytest.fail(f"call {attempt} on a dead server returned {result!r}")

    anyio.run(main, backend=backend)


def test_a_connection_reset_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, SERVER, "reset")

    async def main() -> None:
        async with start_and_connect() as (client, _):
            for _ in range(3):
                with pytest.raises(ServerGoneError, match="lost the connection"):
                    result = await client.call("echo", value=3.0)
                    pytest.fail(f"a reset connection returned {result!r}")

    anyio.run(main, backend="trio")


# --- stalled servers (issue: bounded calls) -----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_to_a_stopped_server_raise_within_the_limit_naming_it(
    backend: str, monkeypatch: pytest.MonkeyPatch, server_log_dir: Path
) -> None:
    use_server(monkeypatch, SERVER, "echo")
    monkeypatch.setenv(CALL_TIMEOUT_ENV, "0.5")

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            port = fields["port"]
            assert await client.call("echo", value=2.0) == 2.0
            server = the_server(server_log_dir)
            suspend(server)  # SIGSTOP: the kernel still accepts connections, nothing answers
            try:
                for concurrent in (1, 3):  # on the idle connection, then on new ones as well
                    started = time.monotonic()
                    found = await outcomes(client, [float(x) for x in range(concurrent)])
                    elapsed = time.monotonic() - started
                    assert all(isinstance(error, ServerTimeoutError) for error in found.values()), found
                    for error in found.values():
                        assert f"127.0.0.1:{port}" in str(error) and "0.5 s" in str(error), error
                        assert CALL_TIMEOUT_ENV in str(error), error
                    assert 0.4 < elapsed < 2.5, elapsed
            finally:
                server.resume()
            assert await client.call("echo", value=3.0) == 3.0  # back in step on a fresh connection

    anyio.run(main, backend=backend)


class ClosingConnection:
    """Stands in for a connection in the watchdog's books; closing it yields, and runs ``meanwhile`` first."""

    def __init__(self, meanwhile: Callable[[], None] = lambda: None) -> None:
        self.meanwhile = meanwhile
        self.closed = False

    async def aclose(self) -> None:
        self.meanwhile()
        await anyio.lowlevel.checkpoint()
        self.closed = True


@pytest.mark.parametrize("reused", [False, True], ids=["call-ends", "connection-reused"])
def test_a_call_that_ends_while_the_watchdog_closes_another_is_never_cut_short(reused: bool) -> None:
    """Two calls pass their limit in one pass. While the first one's connection closes, the second call
    ends (and, if it was in time, its connection serves a new call): the watchdog must neither fail nor
    close a connection that a call in time is using."""

    async def main() -> None:
        client = Client("127.0.0.1", 9, "unused", call_timeout=5)
        deadlines: dict[Any, float] = client._deadlines  # the books, with these stand-ins for connections
        second = ClosingConnection()
        new_call: list[float] = []  # the deadline of a new call on the second connection, if one took it

        def second_call_ends() -> None:  # what the end of Client._exchange does with the books
            in_time = deadlines.pop(second, None) is not None
            if in_time and reused:
                new_call.append(anyio.current_time() + 5)
                deadlines[second] = new_call[0]

        first = ClosingConnection(meanwhile=second_call_ends)
        past = anyio.current_time() - 1
        deadlines.update({first: past, second: past})
        with anyio.move_on_after(0.1):  # one pass, then the watchdog sleeps (at most WATCH_INTERVAL)
            await client._expire_stalled_calls()
        assert first.closed
        assert first not in deadlines
        if new_call:  # the new call keeps its deadline and its connection
            assert deadlines.get(second) == new_call[0] and not second.closed
        else:  # the second call was expired first: its connection is closed, its books cleared
            assert second.closed and second not in deadlines

    anyio.run(main, backend="trio")
