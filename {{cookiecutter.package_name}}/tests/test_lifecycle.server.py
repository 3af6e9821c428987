"""The contract of the server sworker, whatever the server: start-up, its private files, faults, leaks, signals.

These tests know your server only as what ``SERVER_COMMAND`` started (by its pid, from the pid file
beside its log) and call it only through ``probe.py``: they pass unchanged when you put in your own
server. The tests of ``server_process`` and ``lifeline`` themselves run small servers written here that
only listen. Everything runs under trio, as Grain runs it; every process a test starts is ended by its
pid, and every test checks that nothing it started is left.
"""

from __future__ import annotations

import ast
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import psutil
import pytest
from anyio.abc import TaskStatus
from demo_support import PROJECT, demo
from lifecycle_support import (
    SWORKER,
    TASKLET_FAILURE,
    alive,
    command_line,
    descendants,
    head_process,
    kill,
    run_trio,
    start_and_connect,
    suspend,
    wait_until,
)
from server_support import LISTENING_SERVER, running_servers, signal_the_demo, the_server, use_server

from {{ cookiecutter.package_name }} import lifeline, probe, the_sworker
from {{ cookiecutter.package_name }}.client_support import (
    CALL_TIMEOUT_ENV,
    MAX_CONCURRENT_ENV,
    RemoteError,
    ServerGoneError,
    ServerTimeoutError,
    call_timeout,
    max_concurrent,
)
from {{ cookiecutter.package_name }}.demo.environment import local_service
from {{ cookiecutter.package_name }}.demo.local_grain import child_environment, local_grain
from {{ cookiecutter.package_name }}.server_process import ServerStartError, pick_free_port, running_server

pytestmark = pytest.mark.usefixtures("local_addresses", "nothing_left_behind")

PACKAGE = PROJECT / "{{ cookiecutter.package_name }}"
#: What a call to a server that is gone, stalled or refusing may raise: never a result.
CALL_ERRORS = (ServerGoneError, ServerTimeoutError, RemoteError)
#: A listening server deaf to SIGTERM: only SIGKILL ends it.
STUBBORN_SERVER = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + LISTENING_SERVER
#: A listening server with a child of its own (in its process group), as a wrapper script would have.
PARENT_SERVER = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
PARENT_SERVER += LISTENING_SERVER
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


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder where ``tempfile`` makes directories during this test (the instance's ``{workdir}`` too)."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


# --- settings ---------------------------------------------------------------------------------


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


def test_a_bad_startup_timeout_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(the_sworker.STARTUP_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=the_sworker.STARTUP_TIMEOUT_ENV):
        the_sworker.startup_timeout()


# --- start-up faults -------------------------------------------------------------------------


def test_a_missing_server_command_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(the_sworker, "SERVER_COMMAND", ["/nonexistent/terachem", "--port", "{port}"])

    async def main() -> None:
        with pytest.raises(ServerStartError, match=r"cannot start the server: FileNotFoundError.*terachem"):
            async with the_sworker.grain_run_sworker():
                pytest.fail("yielded without a server")

    run_trio(main)


def test_a_server_that_exits_at_once_raises_with_its_output_and_leaves_no_workdir(
    monkeypatch: pytest.MonkeyPatch, server_log_dir: Path
) -> None:
    exits = "import sys; print('licence file missing in', sys.argv[3], flush=True); sys.exit(3)"
    use_server(monkeypatch, exits, "{workdir}")
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
    (log,) = server_log_dir.glob("*.log")  # and no pid file left beside it
    assert sorted(server_log_dir.iterdir()) == [log]
    assert f"(full output: {log})" in message
    workdir = Path(log.read_text().split("licence file missing in ")[1].split()[0])
    assert workdir.name.startswith("{{ cookiecutter.package_name }}-") and not workdir.exists()


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


#: The placeholders each setting takes: ``{secret}`` only in a file, never on a command line.
IN_COMMAND = "the placeholders are {host}, {port}, {workdir}, {secret_file}"
IN_FILES = "the placeholders are {secret}, {host}, {port}, {workdir}, {secret_file}"


@pytest.mark.parametrize(
    ("setting", "value", "unknown", "known"),
    [
        pytest.param("SERVER_COMMAND", ["redis-server", "{config}"], "{config}", IN_COMMAND, id="command"),
        pytest.param("SERVER_COMMAND", ["server", "--password", "{secret}"], "{secret}", IN_COMMAND, id="secret"),
        pytest.param("SERVER_FILES", {"redis.conf": "requirepass {password}"}, "{password}", IN_FILES, id="files"),
    ],
)
def test_an_unknown_placeholder_names_the_known_ones_and_leaves_no_workdir(
    setting: str, value: object, unknown: str, known: str, monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    monkeypatch.setattr(the_sworker, setting, value)

    async def main() -> None:
        with pytest.raises(ServerStartError) as raised:
            async with the_sworker.grain_run_sworker():
                pytest.fail(f"started with {unknown} in {setting}")
        message = str(raised.value)
        assert message.startswith(setting) and f"{unknown} is not a placeholder; {known}" in message, message

    run_trio(main)
    assert list(private_tmp.iterdir()) == []


# --- what the server is given: a private directory, the secret in a file, its own files, a pid file ---


def test_the_server_gets_a_private_workdir_with_the_secret_and_its_files_removed_at_teardown(
    monkeypatch: pytest.MonkeyPatch, server_log_dir: Path
) -> None:
    use_server(monkeypatch, LISTENING_SERVER, "{workdir}", "{secret_file}")
    braces = "{" * 2 + "literal" + "}" * 2  # a brace meant literally is doubled
    config = "listen {host}:{port}\nsecret {secret}\nwork {workdir}\n" + braces + "\n"
    monkeypatch.setattr(the_sworker, "SERVER_FILES", {"server.conf": config})
    seen: list[Path] = []

    async def main() -> None:
        async with the_sworker.grain_run_sworker() as fields:
            workdir, secret_file = (Path(part) for part in the_server(server_log_dir).cmdline()[-2:])
            seen.append(workdir)
            assert workdir.is_dir() and mode(workdir) == 0o700 and workdir.stat().st_uid == os.getuid()
            assert secret_file.parent == workdir
            assert secret_file.read_text() == fields["secret"] and mode(secret_file) == 0o600
            written = workdir / "server.conf"
            assert mode(written) == 0o600
            expected = f"listen 127.0.0.1:{fields['port']}\nsecret {fields['secret']}\nwork {workdir}\n"
            assert written.read_text() == expected + "{literal}\n"

    run_trio(main)
    assert seen and not seen[0].exists()


def test_the_pid_file_names_the_server_while_it_runs_and_goes_with_it(
    monkeypatch: pytest.MonkeyPatch, server_log_dir: Path
) -> None:
    use_server(monkeypatch, LISTENING_SERVER)
    server: list[psutil.Process] = []

    async def main() -> None:
        async with the_sworker.grain_run_sworker() as fields:
            pid_file = the_sworker.server_log_path(str(fields["host"]), int(str(fields["port"]))).with_suffix(".pid")
            assert pid_file.parent == server_log_dir
            server.append(psutil.Process(int(pid_file.read_text())))
            assert server[0].ppid() == os.getpid()  # the process SERVER_COMMAND started, not a wrapper's child
            assert f"127.0.0.1:{fields['port']}" in running_servers(server_log_dir)

    run_trio(main)
    assert not alive(server[0].pid)
    assert [path.suffix for path in server_log_dir.iterdir()] == [".log"]


# --- faults while running ----------------------------------------------------------------------


def test_a_server_dying_mid_run_makes_every_later_call_raise(server_log_dir: Path) -> None:
    async def main() -> None:
        async with start_and_connect() as (client, _):
            await probe.probe(client)
            the_server(server_log_dir).kill()
            for variant in range(3):
                with pytest.raises(CALL_ERRORS):
                    result = await probe.probe(client, variant)
                    pytest.fail(f"a call on a dead server returned {result!r}")

    run_trio(main)


def test_a_stopped_server_fails_each_call_within_the_call_limit(
    monkeypatch: pytest.MonkeyPatch, server_log_dir: Path
) -> None:
    monkeypatch.setenv(CALL_TIMEOUT_ENV, "0.5")

    async def main() -> None:
        async with start_and_connect() as (client, _):
            await probe.probe(client)
            server = the_server(server_log_dir)
            suspend(server)  # SIGSTOP: the kernel still takes the request, nothing answers
            try:
                started = time.monotonic()
                with pytest.raises(ServerTimeoutError, match=CALL_TIMEOUT_ENV):
                    await probe.probe(client, 1)
                assert 0.4 < time.monotonic() - started < 2.5
            finally:
                server.resume()
            await probe.probe(client, 2)  # answers again, and in step

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
                    await probe.probe(client, i)
            await probe.probe(client, 30)  # the right answer: no late reply reached it

    run_trio(main)


def test_cancellation_during_cleanup_still_kills_and_reaps() -> None:
    port = pick_free_port("127.0.0.1")
    command = [sys.executable, "-I", "-S", "-c", STUBBORN_SERVER, "127.0.0.1", str(port)]

    async def serve(*, task_status: TaskStatus[None]) -> None:
        async with running_server(command, host="127.0.0.1", port=port, startup_timeout=10, stop_grace=0.3):
            task_status.started()
            await anyio.sleep_forever()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            await group.start(serve)  # listening
            group.cancel_scope.cancel()  # teardown begins: SIGTERM is ignored, the grace runs
            await anyio.sleep(0.05)
            group.cancel_scope.cancel()  # cancelled again, during cleanup

    started = time.monotonic()
    run_trio(main)
    assert time.monotonic() - started < 3


# --- no leaks ---------------------------------------------------------------------------------


def listening_sockets(process: psutil.Process) -> int:
    return sum(1 for conn in process.net_connections("tcp") if conn.status == psutil.CONN_LISTEN)


def test_twenty_start_stop_cycles_leak_nothing() -> None:
    """With the server ``SERVER_COMMAND`` runs: a cycle that leaked a descriptor or a listening socket
    would leave 20 behind."""
    me = psutil.Process()

    async def cycle() -> None:
        async with start_and_connect() as (client, _):
            await probe.probe(client)

    async def cycles(count: int) -> None:
        for _ in range(count):
            await cycle()

    async def main() -> None:
        await cycle()  # warm-up: the event loop's own descriptors
        fds, listening = me.num_fds(), listening_sockets(me)
        async with anyio.create_task_group() as lanes:  # 4 at a time: faster, and more to leak
            for _ in range(4):
                lanes.start_soon(cycles, 5)
        # A descriptor may still be closing as the last cycle ends (no garbage collection is
        # forced: that would hide a leak). A leaking cycle would leave 20 behind, not settle.
        # Fewer than before is fine: something from an earlier test may have been collected meanwhile.
        for _ in range(100):  # up to 2 s
            if me.num_fds() <= fds and listening_sockets(me) <= listening:
                break
            await anyio.sleep(0.02)
        assert me.num_fds() <= fds
        assert listening_sockets(me) <= listening

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


def test_the_secret_never_reaches_the_command_line_or_the_log(server_log_dir: Path) -> None:
    secret = ""

    async def main() -> None:
        nonlocal secret
        async with start_and_connect() as (client, fields):
            secret = str(fields["secret"])
            await probe.probe(client)
            assert all(secret not in part for part in the_server(server_log_dir).cmdline())

    run_trio(main)
    assert secret and all(secret not in log.read_text() for log in server_log_dir.iterdir())


# --- the server's log --------------------------------------------------------------------------


def wait_for_text(paths: list[Path], text: str) -> None:
    """Wait until ``text`` is in the files (together: a rotation may fall anywhere)."""
    wait_until(lambda: text in "".join(p.read_text() for p in paths if p.exists()), 10, f"{text!r} logged")


def test_the_server_log_is_named_after_the_instance_and_holds_its_output(
    monkeypatch: pytest.MonkeyPatch, server_log_dir: Path
) -> None:
    use_server(monkeypatch, "print('ready to serve', flush=True)\n" + LISTENING_SERVER)
    logs: list[str] = []

    async def main() -> None:
        async with the_sworker.grain_run_sworker() as fields:
            host, port = fields["host"], fields["port"]
            assert fields["name"] == f"{{ cookiecutter.package_name }}@{host}:{port}"
            logs.append(f"{{ cookiecutter.package_name }}-{host}-{port}.log")
            await anyio.to_thread.run_sync(wait_for_text, [server_log_dir / logs[0]], "ready to serve")

    run_trio(main)
    assert [p.name for p in server_log_dir.iterdir()] == logs  # that file, and nothing else


def test_the_server_log_is_bounded_however_much_the_server_prints(tmp_path: Path) -> None:
    # 20,000 tracebacks' worth (2 MB), as a stream of malformed requests would print.
    chatty = "for i in range(20000): print('Traceback (most recent call last):', i, '-' * 60)\n"
    chatty += "print('last words', flush=True)\n" + LISTENING_SERVER
    port = pick_free_port("127.0.0.1")
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


# --- real Grain: signals and tasklet failures ---------------------------------------------------


def age(process: psutil.Process) -> float:
    return time.time() - float(process.create_time())


@pytest.mark.real_grain
def test_sigint_to_the_head_then_the_worker_outlives_it_by_gnaws_idle_quit(
    tmp_path: Path, server_log_dir: Path
) -> None:
    """SIGINT ends the head at once; Gnaw then stops the worker (and its server) ~10 s + idle_quit later.

    Meanwhile the server lives on past the 10 s after which the thread that forked it would have
    exited, had it been a worker thread of a pool (Linux's parent-death signal follows the thread).
    """
    with local_service() as env, local_grain(SWORKER, capacity=4, idle_quit="1s", env=env) as grain:
        worker = grain.worker_pid
        assert worker is not None
        with head_process("slow", grain.config_path, tmp_path, env) as head:
            wait_until(lambda: (tmp_path / "progress").exists(), 30, "first result")
            server = the_server(server_log_dir)
            wait_until(lambda: age(server) > 1.5, 5, "the server 1.5 s old")  # it outlives the head by >10 s
            head.send_signal(signal.SIGINT)
            wait_until(lambda: head.poll() is not None, 10, "head exits on SIGINT")
            head_gone = time.monotonic()
        wait_until(lambda: age(server) > 11 or not alive(server.pid), 15, "the server 11 s old")
        assert alive(server.pid), f"the server died {age(server):.1f} s after it started, while its worker lived"
        wait_until(lambda: not alive(worker), 40, "worker stopped by Gnaw")
        outlived = time.monotonic() - head_gone
        wait_until(lambda: not alive(server.pid), 5, "server reaped by the worker")
    # Measured on Grain 0.17.1: about 10 s plus idle_quit (documented in README.md, Troubleshooting).
    assert outlived < 30, outlived


@pytest.mark.real_grain
def test_a_failing_tasklet_is_retried_three_times_then_the_head_waits_forever(tmp_path: Path) -> None:
    head_log = tmp_path / "head.log"
    failed = f"RuntimeError: {TASKLET_FAILURE}"  # the last line of the traceback Grain logs for each try
    with local_service() as env, local_grain(SWORKER, capacity=4, idle_quit="1s", env=env) as grain:
        with head_process("fail", grain.config_path, tmp_path, env) as head:
            wait_until(lambda: head_log.read_text().count(failed) >= 3, 30, "3 tries")
            time.sleep(0.5)  # a bounded wait: no fourth try (the three came at once), no result
            log = head_log.read_text()
            assert "RESULT" not in log and log.count(failed) == 3, log[-3000:]
            # Grain 0.17 then waits forever; it never crashes (grain_compat mends its KeyError on the dropped instance).
            assert head.poll() is None and "KeyError" not in log, log[-3000:]


@pytest.mark.real_grain
def test_sigterm_to_the_worker_runs_its_cleanup_and_reaps_its_server(tmp_path: Path, server_log_dir: Path) -> None:
    """SIGTERM (an operator's kill, a batch system's qdel) acts as SIGINT (Ctrl-C), which the worker handles:
    it leaves the head and stops its server."""
    with local_service() as env, local_grain(SWORKER, capacity=4, idle_quit="1s", env=env) as grain:
        worker = grain.worker_pid
        assert worker is not None
        with head_process("slow", grain.config_path, tmp_path, env):
            wait_until(lambda: (tmp_path / "progress").exists(), 30, "first result")
            server = the_server(server_log_dir)
            os.kill(worker, signal.SIGTERM)
            wait_until(lambda: not alive(server.pid), 10, "server stopped after SIGTERM to the worker")
            wait_until(lambda: not alive(worker), 15, "worker exits on SIGTERM")
        log = (grain.config_path.parent / "worker.log").read_text()
        assert "interrupted by KeyboardInterrupt, notify head" in log, log[-3000:]


@pytest.mark.real_grain
def test_sigkill_to_the_worker_takes_its_server_along(tmp_path: Path, server_log_dir: Path) -> None:
    with local_service() as env, local_grain(SWORKER, capacity=4, idle_quit="1s", env=env) as grain:
        worker = grain.worker_pid
        assert worker is not None
        with head_process("slow", grain.config_path, tmp_path, env) as head:
            wait_until(lambda: (tmp_path / "progress").exists(), 30, "first result")
            server = the_server(server_log_dir)
            try:
                assert head.poll() is None, "the batch ended before the worker could be killed mid-run"
                os.kill(worker, signal.SIGKILL)
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
    port = pick_free_port("127.0.0.1")
    log = tmp_path / "server.log"
    server_code = PARENT_SERVER if guard == "watchdog" else LISTENING_SERVER
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
def test_the_demo_ended_by_a_signal_leaves_nothing(
    signum: signal.Signals, limit: float, tmp_path: Path, server_log_dir: Path
) -> None:
    """Gnaw, the worker and its server go with the demo: by its own cleanup on SIGTERM, by their guards on SIGKILL."""
    with demo(tmp_path, "--tasks", "100000") as run:
        signal_the_demo(run, signum, limit, server_log_dir)
    if signum == signal.SIGTERM:  # it handled SIGTERM (as SIGINT), and so ran its cleanup
        assert run.process.returncode != -signal.SIGTERM, run.output()
