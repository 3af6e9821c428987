"""The client's pool: V calls at once, one job at a time when asked, cancellation, dead and stalled servers.

The demo server stands in for yours, with ``DELAY_ENV`` making each request take
time; small servers written here stand in for one that runs one job at a time and
one that resets connections. Every process a test starts is ended by its pid.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import psutil
import pytest
from demo_support import demo_summary
from lifecycle_support import descendants, start_and_connect, suspend
from server_support import use_server

from {{ cookiecutter.package_name }} import the_sworker
from {{ cookiecutter.package_name }}.client import (
    CALL_TIMEOUT_ENV,
    MAX_CONCURRENT_ENV,
    Client,
    RemoteError,
    ServerGoneError,
    ServerTimeoutError,
    call_timeout,
    max_concurrent,
)
from {{ cookiecutter.package_name }}.demo.server import DELAY_ENV
from {{ cookiecutter.package_name }}.server_process import ServerStartError

pytestmark = pytest.mark.usefixtures("local_addresses", "nothing_left_behind")

BACKENDS = ["trio", "asyncio"]  # Grain runs trio; the client is anyio code and runs under both
#: A server that runs one job at a time and says "busy" to a second (no braces: the command is format-ted).
ONE_JOB_SERVER = """
import json, socketserver, sys, threading, time
busy = threading.Lock()
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            request = json.loads(line)
            if request.get("op") != "square":
                reply = dict(result="hello")
            elif busy.acquire(blocking=False):
                try:
                    time.sleep(0.02)
                    reply = dict(result=request["x"] * request["x"])
                finally:
                    busy.release()
            else:
                reply = dict(error="busy: this server runs one job at a time")
            reply["id"] = request.get("id")
            self.wfile.write(json.dumps(reply).encode() + b"\\n")
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""
#: A server that holds each request until 8 are in flight (at most 5 s), and tells the most it saw at
#: once ("peak"): 8 only if the client sent 8 requests at once, however busy the machine.
COUNTING_SERVER = """
import json, socketserver, sys, threading
lock = threading.Lock()
now = [0, 0]  # in flight, peak
all_in = threading.Barrier(8)
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            request = json.loads(line)
            if request.get("op") == "square":
                with lock:
                    now[0] += 1
                    now[1] = max(now)
                try:
                    all_in.wait(timeout=5)
                except threading.BrokenBarrierError:
                    pass
                with lock:
                    now[0] -= 1
                reply = dict(result=request["x"] * request["x"])
            else:
                reply = dict(result=now[1] if request.get("op") == "peak" else "hello")
            reply["id"] = request.get("id")
            self.wfile.write(json.dumps(reply).encode() + b"\\n")
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""
#: A server that answers hello, then resets the connection (RST, not FIN) at the first request.
RESET_SERVER = """
import json, socket, struct, sys, threading
def serve(conn):
    stream = conn.makefile("rwb")
    for line in stream:
        request = json.loads(line)
        if request.get("op") == "hello":
            stream.write(json.dumps(dict(id=request.get("id"), result="hello")).encode() + b"\\n")
            stream.flush()
            continue
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.close()
        conn.close()
        return
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def the_server(port: int) -> psutil.Process:
    """The server process listening on ``port`` (others may run, e.g. the conformance kit's)."""
    (server,) = [p for p in descendants(os.getpid()) if str(port) in p.cmdline()]
    return server


def connections_to(port: int) -> int:
    """This process's open connections to ``port``."""
    return sum(
        1
        for conn in psutil.Process().net_connections("tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


async def outcomes(client: Client, xs: list[float]) -> dict[float, float | Exception]:
    """Every ``x`` squared at once, each call in its own task as V tasklets call: its result or its error."""
    found: dict[float, float | Exception] = {}

    async def one(x: float) -> None:
        try:
            found[x] = await client.square(x)
        except Exception as exc:
            found[x] = exc

    async with anyio.create_task_group() as group:
        for x in xs:
            group.start_soon(one, x)
    return found


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan"])
def test_a_bad_call_timeout_names_the_variable(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CALL_TIMEOUT_ENV, raw)
    with pytest.raises(ValueError, match=CALL_TIMEOUT_ENV):
        call_timeout()


@pytest.mark.parametrize("raw", ["none", "0", "1.5", "-2"])
def test_a_bad_max_concurrent_names_the_variable(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_CONCURRENT_ENV, raw)
    with pytest.raises(ValueError, match=MAX_CONCURRENT_ENV):
        max_concurrent()


def test_the_defaults_fit_long_jobs_and_leave_concurrency_to_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CALL_TIMEOUT_ENV, raising=False)
    monkeypatch.delenv(MAX_CONCURRENT_ENV, raising=False)
    assert call_timeout() == 3600
    assert max_concurrent() is None
    monkeypatch.setenv(CALL_TIMEOUT_ENV, "inf")  # no limit at all, if asked for
    assert call_timeout() == float("inf")


def test_a_bad_demo_delay_stops_the_demo_server_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DELAY_ENV, "ten")

    async def main() -> None:
        with pytest.raises(ServerStartError, match=DELAY_ENV):
            async with the_sworker.grain_run_sworker():
                pytest.fail("the server started with a bad delay")

    anyio.run(main, backend="trio")


# --- V at once, or one at a time --------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_v_calls_run_at_once_and_each_gets_its_own_reply(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, COUNTING_SERVER)
    xs = [float(x) for x in range(8)]

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            port = fields["port"]
            assert await outcomes(client, xs) == {x: x * x for x in xs}
            assert await client.call("peak") == len(xs), "the server never had all 8 requests at once"
            opened = connections_to(port)
            assert opened == len(xs), f"{opened} connections for 8 calls at once"  # kept for the next ones
            assert await outcomes(client, xs) == {x: x * x for x in xs}
            assert connections_to(port) == opened, "connections were reopened, not reused"

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_job_at_a_time_gives_right_results_at_any_capacity(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, ONE_JOB_SERVER)
    monkeypatch.setenv(MAX_CONCURRENT_ENV, "1")
    xs = [float(x) for x in range(16)]

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            port = fields["port"]
            assert await outcomes(client, xs) == {x: x * x for x in xs}  # 16 tasklets at once, no "busy"
            assert connections_to(port) == 1

    anyio.run(main, backend=backend)


def test_without_the_setting_a_one_job_server_refuses_concurrent_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of the test above: it is the setting that keeps such a server's results right."""
    use_server(monkeypatch, ONE_JOB_SERVER)
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
    monkeypatch.setenv(DELAY_ENV, "5")

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            port = fields["port"]
            for i in range(40):  # cancelled before sending, while waiting for the reply, just after it
                with anyio.move_on_after(0.002 * (i % 8)):
                    await outcomes(client, [float(i), float(i + 100), float(i + 200), float(i + 300)])
            # A connection cancelled mid-call was closed: its late reply cannot reach these calls.
            xs = [float(x) for x in range(4)]
            assert await outcomes(client, xs) == {x: x * x for x in xs}
            assert connections_to(port) <= 4

    anyio.run(main, backend=backend)


def test_an_error_inside_the_client_block_comes_out_as_it_was() -> None:
    async def main() -> None:
        with pytest.raises(KeyError, match="raised in the block"):
            async with start_and_connect():
                raise KeyError("raised in the block")

    anyio.run(main, backend="trio")


# --- dead servers (rule 10: EOF and reset are errors, never results) ---------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_call_after_the_server_is_killed_raises_the_first_one_too(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with start_and_connect() as (client, fields):
            port = fields["port"]
            xs = [float(x) for x in range(4)]
            assert await outcomes(client, xs) == {x: x * x for x in xs}  # 4 idle connections now
            server = the_server(port)
            server.kill()
            server.wait(5)
            for attempt in range(6):  # the 4 idle connections (EOF), then new ones (refused)
                with pytest.raises(ServerGoneError, match=f"127.0.0.1:{port}"):
                    result = await client.square(3.0)
                    pytest.fail(f"call {attempt} on a dead server returned {result!r}")

    anyio.run(main, backend=backend)


def test_a_connection_reset_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, RESET_SERVER)

    async def main() -> None:
        async with start_and_connect() as (client, _):
            for _ in range(3):
                with pytest.raises(ServerGoneError, match="lost the connection"):
                    result = await client.square(3.0)
                    pytest.fail(f"a reset connection returned {result!r}")

    anyio.run(main, backend="trio")


# --- stalled servers (issue: bounded calls) -----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_to_a_stopped_server_raise_within_the_limit_naming_it(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CALL_TIMEOUT_ENV, "0.5")

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            port = fields["port"]
            assert await client.square(2.0) == 4.0
            server = the_server(port)
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
            assert await client.square(3.0) == 9.0  # back in step on a fresh connection

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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reused", [False, True], ids=["call-ends", "connection-reused"])
def test_a_call_that_ends_while_the_watchdog_closes_another_is_never_cut_short(backend: str, reused: bool) -> None:
    """Two calls pass their limit in one pass. While the first one's connection closes, the second call
    ends (and, if it was in time, its connection serves a new call): the watchdog must neither fail nor
    close a connection that a call in time is using."""

    async def main() -> None:
        client = Client("127.0.0.1", 9, "unused", call_timeout=5)
        second = ClosingConnection()
        new_call: list[float] = []  # the deadline of a new call on the second connection, if one took it

        def second_call_ends() -> None:  # what the end of Client._exchange does with the books
            in_time = client._deadlines.pop(second, None) is not None
            if in_time and reused:
                new_call.append(anyio.current_time() + 5)
                client._deadlines[second] = new_call[0]

        first = ClosingConnection(meanwhile=second_call_ends)
        past = anyio.current_time() - 1
        client._deadlines.update({first: past, second: past})
        with anyio.move_on_after(0.3):
            await client._expire_stalled_calls()
        assert first.closed
        assert first not in client._deadlines
        if new_call:  # the new call keeps its deadline and its connection
            assert client._deadlines.get(second) == new_call[0] and not second.closed
        else:  # the second call was expired first: its connection is closed, its books cleared
            assert second.closed and second not in client._deadlines

    anyio.run(main, backend=backend)


# --- real Grain: what Capacity buys ----------------------------------------------------------------


def run_demo(folder: Path, tasks: int, capacity: int, env: dict[str, str]) -> dict[str, float]:
    summary: dict[str, float] = demo_summary(
        Path(tempfile.mkdtemp(dir=folder)), "--tasks", str(tasks), "--capacity", str(capacity), env=env
    )
    assert summary["wrong"] == 0 and summary["tasks"] == tasks, summary
    return summary


def steady_per_s(summary: dict[str, float]) -> float:
    """Tasklets per second from the first result to the last: start-up left out."""
    return (summary["tasks"] - 1) / (summary["last_result_seconds"] - summary["first_result_seconds"])


@pytest.mark.real_grain
def test_capacity_four_runs_four_requests_at_once_on_real_grain(tmp_path: Path) -> None:
    """200 tasklets on a server that works 10 ms each: V=4 is about 4x V=1 (2.5x asserted: a busy 2-core machine)."""
    work = {DELAY_ENV: "10"}
    speedups = []
    for _ in range(2):  # a second try only if a burst of load from elsewhere spoiled the first
        one, four = run_demo(tmp_path, 200, 1, work), run_demo(tmp_path, 200, 4, work)
        speedups.append(steady_per_s(four) / steady_per_s(one))
        if speedups[-1] >= 2.5:
            break
    assert max(speedups) >= 2.5, f"V=4 over V=1: {speedups}"
    # Told that the server runs one job at a time, the head sends one request at a time: right, at V=1's pace.
    one_job = run_demo(tmp_path, 60, 4, {**work, MAX_CONCURRENT_ENV: "1"})
    assert steady_per_s(one_job) < 1.6 * steady_per_s(one), (steady_per_s(one_job), steady_per_s(one))
