"""Lifecycle faults of the server sworker: bad servers, dying servers, cancellation, leaks, signals.

Everything runs under trio, as Grain runs it. Every process a test starts is
ended by its pid, and every test checks that nothing it started is left.
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import psutil
import pytest
from demo_support import demo
from lifecycle_support import (
    PROJECT,
    SWORKER,
    alive,
    command_line,
    descendants,
    head_process,
    kill,
    listening_addresses,
    run_trio,
    signal_the_demo,
    start_and_connect,
    wait_until,
)
from server_support import use_server

from {{ cookiecutter.package_name }} import lifeline, the_sworker
from {{ cookiecutter.package_name }}.client import RemoteError, ServerGoneError
from {{ cookiecutter.package_name }}.demo.environment import local_service
from {{ cookiecutter.package_name }}.demo.local_grain import child_environment, local_grain
from {{ cookiecutter.package_name }}.server_process import ServerStartError, running_server

pytestmark = pytest.mark.usefixtures("local_addresses", "nothing_left_behind")

PACKAGE = PROJECT / "{{ cookiecutter.package_name }}"
#: A minimal server (no braces: SERVER_COMMAND parts are str.format-ted) speaking the demo's protocol.
TINY_SERVER = """
import json, socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, _ = server.accept()
    stream = conn.makefile("rwb")
    for line in stream:
        req = json.loads(line)
        x = req.get("x", 0)
        res = x * x if req.get("op") == "square" else "hello"
        stream.write(json.dumps(dict(id=req.get("id"), result=res)).encode() + b"\\n")
        stream.flush()
    conn.close()
"""
#: The same, deaf to SIGTERM: only SIGKILL ends it.
STUBBORN_SERVER = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + TINY_SERVER
#: The same, with a child of its own (in its process group), as a wrapper script would have.
PARENT_SERVER = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
PARENT_SERVER += TINY_SERVER
#: A process that runs a server with running_server and prints its pid; argv: guard, port, log, command...
#: With guard "watchdog", Linux's parent-death signal is off, as where prctl does not exist.
RUNNER_SCRIPT = """
import sys
from pathlib import Path

import anyio

from {{ cookiecutter.package_name }} import lifeline
from {{ cookiecutter.package_name }}.server_process import running_server

guard, port, log, command = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
lifeline.CAN_DIE_WITH_PARENT = guard != "watchdog"


async def main():
    async with running_server(command, host="127.0.0.1", port=port, startup_timeout=20, log_path=log) as server:
        print(server.pid, flush=True)
        await anyio.sleep_forever()


anyio.run(main, backend="trio")
"""


# --- start-up faults -------------------------------------------------------------------------


def test_a_missing_server_command_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(the_sworker, "SERVER_COMMAND", ["/nonexistent/terachem", "--port", "{port}"])

    async def main() -> None:
        with pytest.raises(ServerStartError, match=r"cannot start the server: FileNotFoundError.*terachem"):
            async with the_sworker.grain_run_sworker():
                pytest.fail("yielded without a server")

    run_trio(main)


def test_a_server_that_exits_at_once_raises_with_its_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_server(monkeypatch, "import sys; print('licence file missing', flush=True); sys.exit(3)")
    monkeypatch.setenv(the_sworker.LOG_DIR_ENV, str(tmp_path))

    message = ""

    async def main() -> None:
        nonlocal message
        started = time.monotonic()
        with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*licence file missing") as raised:
            async with the_sworker.grain_run_sworker():
                pytest.fail("yielded without a server")
        assert time.monotonic() - started < 5
        message = str(raised.value)

    run_trio(main)
    (log,) = tmp_path.glob("*.log")
    assert f"(full output: {log})" in message
    assert "licence file missing" in log.read_text()


def test_a_server_that_never_listens_fails_within_the_configured_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, "import time; print('warming up', flush=True); time.sleep(60)")
    monkeypatch.setenv(the_sworker.STARTUP_TIMEOUT_ENV, "0.5")

    async def main() -> None:
        started = time.monotonic()
        with pytest.raises(ServerStartError, match=r"(?s)did not listen on .* within 0.5 s.*warming up"):
            async with the_sworker.grain_run_sworker():
                pytest.fail("yielded without a server")
        assert time.monotonic() - started < 4  # 0.5 s, then terminate and reap

    run_trio(main)


def test_a_bad_startup_timeout_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(the_sworker.STARTUP_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=the_sworker.STARTUP_TIMEOUT_ENV):
        the_sworker.startup_timeout()


# --- faults while running ----------------------------------------------------------------------


def server_pids() -> list[int]:
    return [p.pid for p in descendants(os.getpid()) if "demo.server" in " ".join(p.cmdline())]


def test_a_server_dying_mid_run_makes_every_later_call_raise() -> None:
    async def main() -> None:
        async with start_and_connect() as (client, _):
            assert await client.square(3.0) == 9.0  # type: ignore[attr-defined]
            (pid,) = server_pids()
            os.kill(pid, signal.SIGKILL)
            for _ in range(3):
                with pytest.raises((ServerGoneError, RemoteError)):
                    result = await client.square(4.0)  # type: ignore[attr-defined]
                    pytest.fail(f"a call on a dead server returned {result!r}")

    run_trio(main)


@pytest.mark.parametrize("after", [0.0, 0.01, 0.05, 0.2])
def test_cancellation_during_startup_reaps_the_server(after: float) -> None:
    async def main() -> None:
        with anyio.move_on_after(after):
            async with the_sworker.grain_run_sworker():
                await anyio.sleep_forever()

    run_trio(main)


def test_cancellation_during_calls_keeps_the_client_consistent_and_reaps_the_server() -> None:
    async def main() -> None:
        async with start_and_connect() as (client, _):
            for i in range(30):
                with anyio.move_on_after(0.0002 * (i % 5)):
                    await client.square(float(i))  # type: ignore[attr-defined]
            assert await client.square(7.0) == 49.0  # type: ignore[attr-defined]

    run_trio(main)


def test_cancellation_during_cleanup_still_kills_and_reaps(monkeypatch: pytest.MonkeyPatch) -> None:
    command = [sys.executable, "-I", "-S", "-c", STUBBORN_SERVER, "127.0.0.1", "0"]

    async def main() -> None:
        port = the_sworker.pick_free_port("127.0.0.1")
        command[-1] = str(port)
        async with anyio.create_task_group() as group:

            async def serve() -> None:
                async with running_server(command, host="127.0.0.1", port=port, startup_timeout=10, stop_grace=0.3):
                    await anyio.sleep_forever()

            group.start_soon(serve)
            await anyio.sleep(0.5)  # listening by now
            group.cancel_scope.cancel()  # teardown begins: SIGTERM is ignored, the grace runs
            await anyio.sleep(0.05)
            group.cancel_scope.cancel()  # cancelled again, during cleanup

    started = time.monotonic()
    run_trio(main)
    assert time.monotonic() - started < 3


# --- no leaks ---------------------------------------------------------------------------------


def listening_sockets(process: psutil.Process) -> int:
    return sum(1 for conn in process.net_connections("tcp") if conn.status == psutil.CONN_LISTEN)


def test_one_hundred_start_stop_cycles_leak_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(monkeypatch, TINY_SERVER)
    me = psutil.Process()

    async def cycle() -> None:
        async with start_and_connect() as (client, _):
            assert await client.square(2.0) == 4.0  # type: ignore[attr-defined]

    async def cycles(count: int) -> None:
        for _ in range(count):
            await cycle()

    async def main() -> tuple[int, int]:
        await cycle()  # warm-up: the event loop's own descriptors
        fds, listening = me.num_fds(), listening_sockets(me)
        async with anyio.create_task_group() as lanes:  # 4 at a time: faster, and more to leak
            for _ in range(4):
                lanes.start_soon(cycles, 25)
        # A descriptor may still be closing as the last cycle ends (no garbage collection is
        # forced: that would hide a leak). A leaking cycle would leave 100 behind, not settle.
        # Fewer than before is fine: something from an earlier test may have been collected meanwhile.
        for _ in range(100):  # up to 2 s
            if me.num_fds() <= fds and listening_sockets(me) <= listening:
                break
            await anyio.sleep(0.02)
        assert me.num_fds() <= fds
        assert listening_sockets(me) <= listening
        return fds, listening

    run_trio(main)
    assert descendants(os.getpid()) == []


# --- security ---------------------------------------------------------------------------------


def test_commands_are_argument_lists_never_shell_strings() -> None:
    assert isinstance(the_sworker.SERVER_COMMAND, list)
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "shell":
                pytest.fail(f"{path.name}: shell= used")
            if isinstance(node, ast.Attribute) and node.attr in {"system", "popen", "create_subprocess_shell"}:
                pytest.fail(f"{path.name}: {node.attr} used")

    async def main() -> None:
        with pytest.raises(TypeError, match="list of arguments"):
            async with running_server("echo hi; touch x", host="127.0.0.1", port=1, startup_timeout=1):
                pass

    run_trio(main)


def test_a_host_answer_with_shell_characters_stays_one_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_popen(command: list[str], **kwargs: object) -> object:
        seen.append(command)
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    monkeypatch.setenv(the_sworker.HOST_ENV, "127.0.0.1")
    monkeypatch.setattr(the_sworker, "SERVER_COMMAND", ["server", "--name", "{host}; rm -rf ~", "--port", "{port}"])

    async def main() -> None:
        with pytest.raises(ServerStartError):
            async with the_sworker.grain_run_sworker():
                pass

    run_trio(main)
    assert seen and seen[0][2] == "127.0.0.1; rm -rf ~"


def test_the_demo_server_run_on_its_own_binds_loopback_only() -> None:
    from {{ cookiecutter.package_name }}.demo import server

    assert server.SECRET_ENV == the_sworker.SECRET_ENV  # the stand-in reads what the sworker sets
    port = the_sworker.pick_free_port("127.0.0.1")
    env = {**os.environ, server.SECRET_ENV: "s3cret"}
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}.demo.server", "--port", str(port)]
    assert listening_addresses(command, env) == ["127.0.0.1"]


def test_the_secret_never_reaches_the_command_line_or_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with the_sworker.grain_run_sworker() as fields:
            secret = str(fields["secret"])
            (pid,) = server_pids()
            assert all(secret not in part for part in psutil.Process(pid).cmdline())

    run_trio(main)


# --- the server's log --------------------------------------------------------------------------


def wait_for_text(paths: list[Path], text: str) -> None:
    """Wait until ``text`` is in the files (together: a rotation may fall anywhere)."""
    wait_until(lambda: text in "".join(p.read_text() for p in paths if p.exists()), 10, f"{text!r} logged")


def test_the_server_log_is_named_after_the_instance_and_holds_its_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_server(monkeypatch, "print('serving squares', flush=True)\n" + TINY_SERVER)
    monkeypatch.setenv(the_sworker.LOG_DIR_ENV, str(tmp_path))

    logs: list[str] = []

    async def main() -> None:
        async with the_sworker.grain_run_sworker() as fields:
            host, port = fields["host"], fields["port"]
            assert fields["name"] == f"{{ cookiecutter.package_name }}@{host}:{port}"
            logs.append(f"{{ cookiecutter.package_name }}-{host}-{port}.log")
            await anyio.to_thread.run_sync(wait_for_text, [tmp_path / logs[0]], "serving squares")

    run_trio(main)
    assert [p.name for p in tmp_path.iterdir()] == logs  # that file, and nothing else


def test_the_server_log_is_bounded_however_much_the_server_prints(tmp_path: Path) -> None:
    # 20,000 tracebacks' worth (2 MB), as a stream of malformed requests would print.
    chatty = "for i in range(20000): print('Traceback (most recent call last):', i, '-' * 60)\n"
    chatty += "print('last words', flush=True)\n" + TINY_SERVER
    port = the_sworker.pick_free_port("127.0.0.1")
    command = [sys.executable, "-I", "-S", "-c", chatty, "127.0.0.1", str(port)]
    log, older = tmp_path / "server.log", tmp_path / "server.log.1"

    async def main() -> None:
        async with running_server(
            command, host="127.0.0.1", port=port, startup_timeout=20, log_path=log, log_max_bytes=100_000
        ):
            await anyio.to_thread.run_sync(wait_for_text, [older, log], "last words")

    run_trio(main)
    assert sorted(tmp_path.iterdir()) == [log, older]
    assert log.stat().st_size <= 100_000 and older.stat().st_size <= 100_000
    assert "Traceback (most recent call last): 19999" in older.read_text() + log.read_text()


# --- the demo server: strangers ------------------------------------------------------------------


def demo_server(port: int, *options: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, the_sworker.SECRET_ENV: "s3cret"}
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}.demo.server", "--port", str(port), *options]
    return subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def connect(port: int) -> socket.socket:
    deadline = time.monotonic() + 20
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def greet(sock: socket.socket) -> bytes:
    sock.sendall(b'{"op": "hello", "secret": "s3cret", "id": 1}\n')
    return sock.recv(1000)


def closed(sock: socket.socket) -> bool:
    """Whether the peer closes the connection (within the socket's timeout)."""
    try:
        return sock.recv(1000) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def peak_memory(pid: int) -> int:
    """The process's peak resident memory so far (Linux), or its present one (elsewhere), in bytes."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(psutil.Process(pid).memory_info().rss)


def test_the_demo_server_drops_a_line_too_long_without_holding_it() -> None:
    port = the_sworker.pick_free_port("127.0.0.1")
    server = demo_server(port)
    try:
        with connect(port) as sock:
            assert b'"result": "hello"' in greet(sock)
            before = peak_memory(server.pid)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed while we still send: the point
                sock.sendall(b'{"op": "square", "x": "' + b"9" * 10_000_000 + b'"}\n')  # a 10 MB line
            assert closed(sock)
        grown = peak_memory(server.pid) - before
        assert grown < 5_000_000, f"the server held {grown} bytes more at its peak"
        with connect(port) as sock:  # it serves the next client
            assert b'"result": "hello"' in greet(sock)
    finally:
        server.kill()
        server.wait()


def test_the_demo_server_closes_a_connection_that_does_not_authenticate_in_time() -> None:
    port = the_sworker.pick_free_port("127.0.0.1")
    server = demo_server(port, "--auth-timeout", "0.5")
    try:
        with connect(port) as silent, connect(port) as trickling, connect(port) as greeted:
            assert b'"result": "hello"' in greet(greeted)
            started = time.monotonic()

            def trickle() -> None:  # a byte at a time, never a whole line: each read alone would be quick
                with contextlib.suppress(OSError):
                    for _ in range(40):
                        trickling.sendall(b"{")
                        time.sleep(0.05)

            sender = threading.Thread(target=trickle)
            sender.start()
            assert closed(silent)
            assert closed(trickling)
            sender.join()
            assert 0.4 < time.monotonic() - started < 3
            greeted.sendall(b'{"op": "square", "x": 3, "id": 2}\n')  # the authenticated one stays
            assert b'"result": 9' in greeted.recv(1000)
    finally:
        server.kill()
        server.wait()


# --- real Grain: signals and tasklet failures ---------------------------------------------------


def worker_servers(worker_pid: int) -> list[psutil.Process]:
    return [p for p in descendants(worker_pid) if "demo.server" in command_line(p)]


@pytest.mark.real_grain
def test_sigint_to_the_head_then_the_worker_outlives_it_by_gnaws_idle_quit(tmp_path: Path) -> None:
    """SIGINT ends the head at once; Gnaw then stops the worker (and its server) ~10 s + idle_quit later."""
    with local_service() as env, local_grain(SWORKER, capacity=4, idle_quit="1s", env=env) as grain:
        assert grain.worker_pid
        with head_process("slow", grain.config_path, tmp_path, env) as head:
            wait_until(lambda: (tmp_path / "progress").exists(), 30, "first result")
            servers = [p.pid for p in worker_servers(grain.worker_pid)]
            assert servers
            head.send_signal(signal.SIGINT)
            wait_until(lambda: head.poll() is not None, 10, "head exits on SIGINT")
        outlived = wait_until(lambda: not alive(grain.worker_pid), 40, "worker stopped by Gnaw")
        wait_until(lambda: not any(alive(pid) for pid in servers), 5, "server reaped by the worker")
    # Measured on Grain 0.17.1: about 10 s plus idle_quit (documented in README.md, Troubleshooting).
    assert outlived < 30, outlived


@pytest.mark.real_grain
def test_sigint_to_the_worker_reaps_its_server(tmp_path: Path) -> None:
    with local_service() as env, local_grain(SWORKER, capacity=4, idle_quit="1s", env=env) as grain:
        assert grain.worker_pid
        with head_process("slow", grain.config_path, tmp_path, env):
            wait_until(lambda: (tmp_path / "progress").exists(), 30, "first result")
            servers = [p.pid for p in worker_servers(grain.worker_pid)]
            assert servers
            os.kill(grain.worker_pid, signal.SIGINT)
            wait_until(lambda: not alive(grain.worker_pid), 15, "worker exits on SIGINT")
            assert not any(alive(pid) for pid in servers)


@pytest.mark.real_grain
def test_a_failing_tasklet_is_retried_three_times_then_the_head_waits_forever(tmp_path: Path) -> None:
    with local_service() as env, local_grain(SWORKER, capacity=4, idle_quit="1s", env=env) as grain:
        with head_process("fail", grain.config_path, tmp_path, env) as head:
            wait_until(lambda: (tmp_path / "head.log").read_text().count("square needs a number") >= 3, 30, "3 tries")
            time.sleep(1)  # a bounded wait: no fourth try, no result
            log = (tmp_path / "head.log").read_text()
            assert "RESULT" not in log
            # Grain 0.17 then waits forever (or, sometimes, crashes with KeyError: the instance name).
            assert head.poll() is None or "KeyError" in log, log[-3000:]
            assert "refused 'square': square needs a number, got 'not a number'" in log


@pytest.mark.real_grain
def test_sigterm_to_the_worker_runs_its_cleanup_and_reaps_its_server(tmp_path: Path) -> None:
    """SIGTERM (an operator's kill, a batch system's qdel) acts as SIGINT: the worker leaves and stops its server."""
    with local_service() as env, local_grain(SWORKER, capacity=4, idle_quit="1s", env=env) as grain:
        assert grain.worker_pid
        with head_process("slow", grain.config_path, tmp_path, env):
            wait_until(lambda: (tmp_path / "progress").exists(), 30, "first result")
            servers = worker_servers(grain.worker_pid)
            assert servers
            os.kill(grain.worker_pid, signal.SIGTERM)
            wait_until(lambda: not any(alive(p.pid) for p in servers), 10, "server stopped after SIGTERM to the worker")
            wait_until(lambda: not alive(grain.worker_pid), 15, "worker exits on SIGTERM")
        log = (grain.config_path.parent / "worker.log").read_text()
        assert "interrupted by KeyboardInterrupt, notify head" in log, log[-3000:]


@pytest.mark.real_grain
def test_sigkill_to_the_worker_takes_its_server_along_but_not_before(tmp_path: Path) -> None:
    """The server lives on past the 10 s after which the thread that forked it would have exited, had it
    been a worker thread of a pool (Linux's parent-death signal follows the thread); then the worker's
    SIGKILL takes it along within 2 s."""
    with local_service() as env, local_grain(SWORKER, capacity=4, idle_quit="1s", env=env) as grain:
        assert grain.worker_pid
        with head_process("slow", grain.config_path, tmp_path, env) as head:
            wait_until(lambda: (tmp_path / "progress").exists(), 30, "first result")
            (server,) = worker_servers(grain.worker_pid)
            try:
                time.sleep(max(0.0, 11 - (time.time() - server.create_time())))
                assert alive(server.pid), "the server died while its worker lived"
                assert head.poll() is None, "the batch ended before the worker could be killed mid-run"
                os.kill(grain.worker_pid, signal.SIGKILL)
                gone_after = wait_until(lambda: not alive(server.pid), 5, "server gone after SIGKILL to the worker")
            finally:
                kill([server])
    assert gone_after < 2, gone_after


@pytest.mark.parametrize(
    "guard",
    [
        "watchdog",
        pytest.param(
            "parent-death signal",
            marks=pytest.mark.skipif(not lifeline.CAN_DIE_WITH_PARENT, reason="PR_SET_PDEATHSIG is Linux only"),
        ),
    ],
)
def test_each_guard_alone_takes_the_server_along_when_its_parent_is_killed(guard: str, tmp_path: Path) -> None:
    """The watchdog stops the server's whole process group (here: what it started too); Linux's
    parent-death signal stops the server itself even when the watchdog was killed first."""
    port = the_sworker.pick_free_port("127.0.0.1")
    log = tmp_path / "server.log"
    server_code = PARENT_SERVER if guard == "watchdog" else TINY_SERVER
    command = [sys.executable, "-c", RUNNER_SCRIPT, guard, str(port), str(log)]
    command += [sys.executable, "-I", "-S", "-c", server_code, "127.0.0.1", str(port)]
    runner = subprocess.Popen(
        command, cwd=PROJECT, env=child_environment(SWORKER, {}), stdout=subprocess.PIPE, text=True
    )
    started: list[psutil.Process] = []
    try:
        assert runner.stdout is not None
        with runner.stdout:
            server = int(runner.stdout.readline())  # printed once it listens, its watchdog running
        started = descendants(runner.pid)
        (watchdog,) = [p for p in started if "stand down" in command_line(p)]
        assert len(started) == (3 if guard == "watchdog" else 2), [command_line(p) for p in started]
        if guard != "watchdog":
            watchdog.kill()
            wait_until(lambda: not alive(watchdog.pid), 5, "the watchdog killed")
        runner.kill()
        runner.wait()
        what = f"what the killed process started, with the {guard} alone"
        gone_after = wait_until(lambda: not any(alive(p.pid) for p in started), 5, what)
        assert not alive(server)
        assert gone_after < 2, gone_after
        if guard == "watchdog":
            assert "[watchdog] process" in log.read_text()
    finally:
        runner.kill()
        runner.wait()
        kill(started)


@pytest.mark.real_grain
@pytest.mark.parametrize(
    ("signum", "limit"),
    [pytest.param(signal.SIGTERM, 20.0, id="SIGTERM"), pytest.param(signal.SIGKILL, 5.0, id="SIGKILL")],
)
def test_the_demo_ended_by_a_signal_leaves_nothing(signum: signal.Signals, limit: float, tmp_path: Path) -> None:
    """Gnaw, the worker and its server go with the demo: by its own cleanup on SIGTERM, by their guards on SIGKILL."""
    with demo(tmp_path, "--tasks", "100000") as run:
        signal_the_demo(run, signum, limit, "gnaw", "grain.worker", "demo.server")
    if signum == signal.SIGTERM:  # it handled SIGTERM (as SIGINT), and so ran its cleanup
        assert run.process.returncode != -signal.SIGTERM, run.output()
