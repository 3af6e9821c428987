"""The HTTP client: the check at connect, V calls at once, one job at a time, cancellation, dead and stalled servers.

Small HTTP servers written here stand in for yours (none of this imports the demo
server, so these tests hold when you delete it): one that answers, one that counts the
requests it holds at once, one that runs one job at a time, one that resets connections.
The sworker starts each as it starts yours; every process a test starts is ended by its pid.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import anyio
import psutil
import pytest
from lifecycle_support import start_and_connect, suspend
from server_support import use_server

from {{ cookiecutter.package_name }} import the_sworker
from {{ cookiecutter.package_name }}.client import HEALTH_PATH, Client
from {{ cookiecutter.package_name }}.client_support import (
    CALL_TIMEOUT_ENV,
    MAX_CONCURRENT_ENV,
    RemoteError,
    ServerGoneError,
    ServerTimeoutError,
    call_timeout,
    max_concurrent,
)
from {{ cookiecutter.package_name }}.server_process import pick_free_port

pytestmark = pytest.mark.usefixtures("local_addresses", "nothing_left_behind")

BACKENDS = ["trio", "asyncio"]  # Grain runs trio; the client is anyio code and runs under both

#: What every server below shares (no braces: the command is format-ted): HTTP/1.1 keep-alive, a
#: thread per connection, the secret checked on every request, ``GET /health``, JSON replies.
#: A subclass of ``Handler`` changes ``answer(op, params) -> (status, reply)``.
HTTP_SERVER = """
import json, os, socket, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
TOKEN = "Bearer " + os.environ["{{ cookiecutter.package_name | upper }}_SERVER_SECRET"]
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def reply(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def refused(self):
        if self.headers.get("Authorization") == TOKEN:
            return False
        self.close_connection = True  # the body is left unread
        self.reply(401, dict(error="wrong token"))
        return True
    def do_GET(self):
        if not self.refused():
            self.reply(200, dict(result="up"))
    def do_POST(self):
        if not self.refused():
            params = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.reply(*self.answer(self.path.lstrip("/"), params))
    def answer(self, op, params):
        x = params.get("x")
        if op == "square" and isinstance(x, (int, float)):
            return 200, dict(result=x * x)
        return 400, dict(error="square needs a number, got " + repr(x))
def serve(handler):
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), handler).serve_forever()
"""
SQUARE_SERVER = HTTP_SERVER + "serve(Handler)\n"
#: Each request takes 5 ms, time enough to be cancelled mid-call.
SLOW_SERVER = (
    HTTP_SERVER
    + """
class Slow(Handler):
    def answer(self, op, params):
        time.sleep(0.005)
        return Handler.answer(self, op, params)
serve(Slow)
"""
)
#: Holds each request until 8 are in flight (at most 5 s), and tells the most it saw at once
#: (``peak``): 8 only if the client sent 8 requests at once, however busy the machine.
COUNTING_SERVER = (
    HTTP_SERVER
    + """
lock = threading.Lock()
now = [0, 0]  # in flight, peak
all_in = threading.Barrier(8)
class Counting(Handler):
    def answer(self, op, params):
        if op == "peak":
            return 200, dict(result=now[1])
        with lock:
            now[0] += 1
            now[1] = max(now)
        try:
            all_in.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        with lock:
            now[0] -= 1
        return Handler.answer(self, op, params)
serve(Counting)
"""
)
#: Runs one job at a time and says "busy" (409) to a second.
ONE_JOB_SERVER = (
    HTTP_SERVER
    + """
busy = threading.Lock()
class OneJob(Handler):
    def answer(self, op, params):
        if not busy.acquire(blocking=False):
            return 409, dict(error="busy: this server runs one job at a time")
        try:
            time.sleep(0.02)
            return Handler.answer(self, op, params)
        finally:
            busy.release()
serve(OneJob)
"""
)
#: Answers odd things: no result, a body that is not JSON, an error page, a refusal with its reason.
ODD_SERVER = (
    HTTP_SERVER
    + """
class Odd(Handler):
    def answer(self, op, params):
        return dict(
            empty=(200, dict(answer=1)),
            text=(200, b"fine, thanks"),
            crash=(500, b"Internal Server Error"),
            refuse=(422, dict(error="x must be below 10")),
        )[op]
serve(Odd)
"""
)
#: Closes a connection that was idle over 1.2 s when the next request comes on it, unanswered: the
#: race that a server's keep-alive timeout (uvicorn's 5 s, gunicorn's 2 s) makes, made certain.
IDLE_CLOSING_SERVER = (
    HTTP_SERVER
    + """
class IdleClosing(Handler):
    last = 0.0
    def do_POST(self):
        if self.last and time.monotonic() - self.last > 1.2:
            self.close_connection = True
            return
        Handler.do_POST(self)
        self.last = time.monotonic()
serve(IdleClosing)
"""
)
#: Has no health route: GET answers 404 with a page that is not JSON.
NO_HEALTH_SERVER = (
    HTTP_SERVER
    + """
class NoHealth(Handler):
    def do_GET(self):
        self.reply(404, b"Not Found")
serve(NoHealth)
"""
)
#: Passes the check at connect, then resets the connection (RST, not FIN) at every call.
RESET_SERVER = (
    HTTP_SERVER
    + """
class Reset(Handler):
    def do_POST(self):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.rfile.close()
        self.connection.close()
serve(Reset)
"""
)


def the_server(fields: dict[str, Any]) -> psutil.Process:
    """The process ``SERVER_COMMAND`` started for the instance with these fields: by the pid noted beside its log."""
    pid_file = the_sworker.server_log_path(fields["host"], fields["port"]).with_suffix(".pid")
    return psutil.Process(int(pid_file.read_text()))


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


def test_a_bad_setting_fails_in_grain_context_before_any_tasklet(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, SQUARE_SERVER)
    monkeypatch.setenv(MAX_CONCURRENT_ENV, "many")

    async def main() -> None:
        with pytest.raises(ValueError, match=MAX_CONCURRENT_ENV):
            async with start_and_connect():
                pytest.fail("connected with a bad setting")

    anyio.run(main, backend="trio")


# --- the check at connect: a wrong address or secret fails in grain_context, not in a tasklet ---------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wrong_secret_fails_at_connect_naming_the_refusal(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, SQUARE_SERVER)

    async def main() -> None:
        async with the_sworker.grain_run_sworker() as fields:
            host, port, secret = str(fields["host"]), fields["port"], str(fields["secret"])
            assert isinstance(port, int)
            with pytest.raises(RemoteError, match=rf"{host}:{port} refused the secret at .*: wrong token \(HTTP 401\)"):
                async with Client.connect(host, port, "not-the-secret"):
                    pytest.fail("connected with a wrong secret")
            async with Client.connect(host, port, secret) as client:
                assert await client.square(3.0) == 9.0

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wrong_address_fails_at_connect(backend: str) -> None:
    port = pick_free_port("127.0.0.1")  # nothing listens there

    async def main() -> None:
        with pytest.raises(ServerGoneError, match=f"cannot connect to the server at 127.0.0.1:{port}"):
            async with Client.connect("127.0.0.1", port, "secret"):
                pytest.fail("connected to a port where nothing listens")

    anyio.run(main, backend=backend)


def test_a_server_without_the_health_route_fails_at_connect_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, NO_HEALTH_SERVER)

    async def main() -> None:
        with pytest.raises(RemoteError, match=r"refused the check at connect .*: Not Found \(HTTP 404\); HEALTH_PATH"):
            async with start_and_connect():
                pytest.fail("connected without a health route")

    anyio.run(main, backend="trio")


def test_a_server_that_accepts_but_never_answers_fails_connect_within_the_limit() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens; the kernel accepts, nobody reads
        port = silent.getsockname()[1]

        async def main() -> float:
            started = time.monotonic()
            with pytest.raises(ServerTimeoutError, match=rf"127\.0\.0\.1:{port} .*{HEALTH_PATH}.* 0\.3 s"):
                async with Client.connect("127.0.0.1", port, "secret", call_timeout=0.3):
                    pytest.fail("connected to a server that never answered")
            return time.monotonic() - started

        elapsed = anyio.run(main, backend="trio")
    assert 0.25 < elapsed < 2.0, elapsed


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
            assert await outcomes(client, xs) == {x: x * x for x in xs}  # 16 tasklets at once, no "busy"
            assert connections_to(fields["port"]) == 1

    anyio.run(main, backend=backend)


def test_without_the_setting_a_one_job_server_refuses_concurrent_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of the test above: it is the setting that keeps such a server's results right."""
    use_server(monkeypatch, ONE_JOB_SERVER)
    monkeypatch.delenv(MAX_CONCURRENT_ENV, raising=False)

    async def main() -> None:
        async with start_and_connect() as (client, _):
            found = await outcomes(client, [float(x) for x in range(8)])
            refused = [error for error in found.values() if isinstance(error, RemoteError)]
            assert refused and all("HTTP 409" in str(e) and "busy" in str(e) for e in refused), found

    anyio.run(main, backend="trio")


# --- what the server answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "error"),
    [
        ("refuse", r"refused 'refuse': x must be below 10 \(HTTP 422\)"),
        ("crash", r"refused 'crash': Internal Server Error \(HTTP 500\)"),
        ("empty", r"answered 'empty' without a result: .*answer"),
        ("text", r"sent a reply to 'text' that is not JSON"),
    ],
)
def test_an_answer_that_is_no_result_raises_with_the_servers_words(
    op: str, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(monkeypatch, ODD_SERVER)

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            with pytest.raises(RemoteError, match=rf"server at 127\.0\.0\.1:{fields['port']} {error}"):
                result = await client.call(op)
                pytest.fail(f"{op!r} returned {result!r}")

    anyio.run(main, backend="trio")


def test_a_refused_call_says_why_and_the_client_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, SQUARE_SERVER)

    async def main() -> None:
        async with start_and_connect() as (client, _):
            with pytest.raises(RemoteError, match=r"refused 'square': square needs a number, got 'two' \(HTTP 400\)"):
                await client.call("square", x="two")
            assert await client.square(2.0) == 4.0

    anyio.run(main, backend="trio")


# --- cancellation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancelled_calls_leave_the_client_in_step_and_warn_nothing(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled before sending, mid-send, waiting for the reply, just after it. Under trio, httpx's own
    request body would warn here (encode/httpx#3686), which ``-W error`` turns into a failure."""
    use_server(monkeypatch, SLOW_SERVER)

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            for i in range(40):
                with anyio.move_on_after(0.002 * (i % 8)):
                    await outcomes(client, [float(i), float(i + 100), float(i + 200), float(i + 300)])
            # A connection cancelled mid-call was closed: its late reply cannot reach these calls.
            xs = [float(x) for x in range(4)]
            assert await outcomes(client, xs) == {x: x * x for x in xs}
            assert connections_to(fields["port"]) <= 4

    anyio.run(main, backend=backend)


def test_an_error_inside_the_client_block_comes_out_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, SQUARE_SERVER)

    async def main() -> None:
        with pytest.raises(KeyError, match="raised in the block"):
            async with start_and_connect():
                raise KeyError("raised in the block")

    anyio.run(main, backend="trio")


# --- dead servers: a lost connection is an error, never a result ---------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_call_after_the_server_is_killed_raises_the_first_one_too(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(monkeypatch, SQUARE_SERVER)

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            port = fields["port"]
            xs = [float(x) for x in range(4)]
            assert await outcomes(client, xs) == {x: x * x for x in xs}  # 4 idle connections now
            server = the_server(fields)
            server.kill()
            server.wait(5)
            for attempt in range(6):  # the idle connections (closed), then new ones (refused)
                with pytest.raises(ServerGoneError, match=f"127.0.0.1:{port}"):
                    result = await client.square(3.0)
                    pytest.fail(f"call {attempt} on a dead server returned {result!r}")

    anyio.run(main, backend=backend)


def test_a_connection_reset_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, RESET_SERVER)

    async def main() -> None:
        async with start_and_connect() as (client, _):
            for _ in range(3):
                with pytest.raises(ServerGoneError, match=r"lost the connection .* during 'square'"):
                    result = await client.square(3.0)
                    pytest.fail(f"a reset connection returned {result!r}")

    anyio.run(main, backend="trio")


def test_a_connection_idle_for_longer_than_a_server_keeps_one_is_not_used_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_server(monkeypatch, IDLE_CLOSING_SERVER)

    async def main() -> None:
        async with start_and_connect() as (client, _):
            assert await client.square(2.0) == 4.0
            await anyio.sleep(1.3)  # past KEEPALIVE_EXPIRY (1 s): the next call opens a new connection
            assert await client.square(3.0) == 9.0

    anyio.run(main, backend="trio")


# --- stalled servers: every call is bounded --------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_to_a_stopped_server_raise_within_the_limit_naming_it(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(monkeypatch, SQUARE_SERVER)
    monkeypatch.setenv(CALL_TIMEOUT_ENV, "0.5")

    async def main() -> None:
        async with start_and_connect() as (client, fields):
            port = fields["port"]
            assert await client.square(2.0) == 4.0
            server = the_server(fields)
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
