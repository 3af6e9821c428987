"""Unit tests of the kit's pieces: msgpack replay, credential finder, footprint, stall monitor, rules."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import socket
import subprocess
import sys
import threading
import time

import anyio
import psutil
import pytest
import trio
from sworker_conformance import RULES, ContractViolation
from sworker_conformance.checks import check_dead_server_raises, find_long_lived_credential, rate_refusal
from sworker_conformance.footprint import LINEAGE, LINEAGE_ENV, Footprint
from sworker_conformance.instance import held_at_module_level, msgpack_round_trip, needs_asyncio, needs_trio
from sworker_conformance.observation import (
    GarbageCatcher,
    Observation,
    fields_after_msgpack,
    missing_setting,
    validate_yield,
)
from sworker_conformance.relay import CLIENT_SIDE, client_endings, intercepting, still_open, wait_for_endings
from sworker_conformance.rules import CouldNotJudge
from sworker_conformance.target import DEFAULT_STARTUP_TIMEOUT, Target
from sworker_conformance.watch import Frame, LoopWatch, Sample

from .conftest import TEMPLATE


def test_msgpack_round_trip_is_what_grain_sends() -> None:
    fields = {"host": "h", "port": 1, "ratio": 0.5, "ok": True, "none": None, "raw": b"\x00", "nested": {"a": [1]}}
    assert msgpack_round_trip(fields, "pkg.mod") == fields
    assert msgpack_round_trip({"pair": ("a", 1)}, "pkg.mod") == {"pair": ["a", 1]}  # tuples come back as lists
    with pytest.raises(TypeError):
        msgpack_round_trip({"tags": {"a"}}, "pkg.mod")
    with pytest.raises(OverflowError):
        msgpack_round_trip({"big": 2**70}, "pkg.mod")
    with pytest.raises(ValueError):
        msgpack_round_trip({"keys": {1: "one"}}, "pkg.mod")


@pytest.mark.parametrize("value", [("a", 1), {"a"}, 2**70, {1: "x"}, {"deep": [("t",)]}])
def test_fields_that_do_not_survive_are_rule_4(value: object) -> None:
    with pytest.raises(ContractViolation) as caught:
        fields_after_msgpack(Target("pkg.mod"), {"field": value})
    assert caught.value.rule.number == 4


@pytest.mark.parametrize(
    "yielded",
    [
        ["name"],
        {"host": "h"},
        {"name": 3},
        {"name": ""},
        {"name": "a*"},
        {"name": "a[1]"},
        {"name": "a", "_stype": "x"},
    ],
)
def test_unusable_yields_are_rule_3(yielded: object) -> None:
    with pytest.raises(ContractViolation) as caught:
        validate_yield(yielded)
    assert caught.value.rule.number == 3


def test_credential_finder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_API_TOKEN", "s3cr3t-value-123")
    assert "SERVICE_API_TOKEN" in (find_long_lived_credential({"auth": "s3cr3t-value-123"}, None) or "")
    assert "SERVICE_API_TOKEN" in (find_long_lived_credential({"cfg": {"x": ["Bearer s3cr3t-value-123"]}}, None) or "")
    assert find_long_lived_credential({"key": "ghp_" + "a" * 36}, None)  # looks like a GitHub token
    fixed = {"password": "hunter2hunter2"}
    assert find_long_lived_credential(fixed, dict(fixed))  # the same in two instances: long-lived
    assert find_long_lived_credential({"secret": "aa11"}, {"secret": "bb22"}) is None  # fresh per instance
    assert find_long_lived_credential({"host": "127.0.0.1", "port": 80}, {"host": "127.0.0.1", "port": 80}) is None


def test_needs_asyncio_recognises_asyncio_only_errors() -> None:
    assert needs_asyncio(RuntimeError("no running event loop"))
    assert needs_asyncio(ExceptionGroup("g", [RuntimeError("no running event loop")]))
    assert not needs_asyncio(RuntimeError("something else"))


def test_footprint_sees_a_child_and_its_socket_and_not_others() -> None:
    before = Footprint.now()
    code = "import socket,time; s=socket.create_server(('127.0.0.1',0)); print(s.getsockname()[1],flush=True)"
    code += "; time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        added = Footprint.now().added_since(before)
        assert child.pid in added.processes
        assert ("127.0.0.1", port, child.pid) in added.listening
        assert os.environ[LINEAGE_ENV] == LINEAGE  # what children inherit
        unchanged = Footprint.now().added_since(Footprint.now())
        assert not unchanged  # the same socket seen twice is not new, whatever pid is shown
        added.kill()
        assert child.wait(5) is not None
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_footprint_ignores_processes_that_are_not_ours() -> None:
    before = Footprint.now()
    env = {key: value for key, value in os.environ.items() if key != LINEAGE_ENV}
    code = "import os,sys,time; os.fork() and sys.exit(0); time.sleep(30)"  # a daemon without our marker
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    time.sleep(0.1)
    added = Footprint.now().added_since(before)
    try:
        assert not added, added.describe()
    finally:
        for process in psutil.process_iter(["cmdline"]):
            if process.info["cmdline"] and code in process.info["cmdline"]:
                process.kill()


def test_footprint_finds_a_marked_orphan() -> None:
    before = Footprint.now()
    code = "import os,sys,time; os.fork() and sys.exit(0); time.sleep(30)"  # re-parented, marker inherited
    subprocess.run([sys.executable, "-c", code], check=True)
    time.sleep(0.1)
    added = Footprint.now().added_since(before)
    assert len(added.processes) == 1, added.describe()
    added.kill()


def _blocking_call() -> None:
    time.sleep(0.15)


async def _watched(watch: LoopWatch, phase: str | None, blocking: bool) -> None:
    if phase is None:
        _blocking_call()  # the kit's own work between calls: not watched
        await anyio.sleep(0.02)
        return
    async with watch.watching(phase):
        await anyio.sleep(0.01)
        if blocking:
            _blocking_call()
        await anyio.sleep(0.01)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_the_loop_watch_sees_a_stall_and_names_where_it_was_blocked(backend: str) -> None:
    async def main() -> LoopWatch:
        watch = LoopWatch(own_modules=(__name__.split(".")[0],))
        async with anyio.create_task_group() as group:
            await group.start(watch.run)
            await _watched(watch, "a quiet call", blocking=False)
            await _watched(watch, None, blocking=True)
            await _watched(watch, "a blocking call", blocking=True)
            group.cancel_scope.cancel()
        return watch

    watch = anyio.run(main, backend=backend)
    assert [stall.phase for stall in watch.stalls] == ["a blocking call"], watch.stalls
    stall = watch.stalls[0]
    assert 0.1 <= stall.seconds < 1.0
    assert stall.where is not None and stall.where.function == "_blocking_call"
    assert "test_units.py" in stall.location() and "time.sleep(0.15)" in stall.location()


def test_the_loop_watch_ignores_an_idle_loop_and_imports() -> None:
    """A loop idle in its own wait (the machine was busy) or importing on first use is not the module's stall."""
    watch = LoopWatch(own_modules=("tests",))

    def sample(*frames: tuple[str, str]) -> Sample:
        return Sample(0.0, "p", tuple(Frame(module, f"{module}.py", 1, function) for module, function in frames))

    idle = sample(("selectors", "select"))
    importing = sample(("x", "f"), ("tests.m", "g"), ("importlib._bootstrap", "_find_and_load"))
    own = sample(("ssl", "load"), ("tests.m", "g"))
    assert watch._locate(idle) is None and watch._locate(importing) is None
    located = watch._locate(own)
    assert located is not None and located[0].module == "ssl" and located[1].module == "tests.m"


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize("ending", ["eof", "reset"])
def test_the_relay_ends_a_connection_as_told(backend: str, ending: str) -> None:
    """EOF is a read of b"" (no reset follows), a reset raises; new connections are refused. Every time."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            while data := connection.recv(100):
                connection.sendall(data)

    async def main() -> tuple[object, object, object]:
        token = CLIENT_SIDE.set(True)
        try:
            with intercepting(threading.get_ident()) as relay:
                stream = await anyio.connect_tcp("127.0.0.1", port)
                await stream.send(b"ping")
                assert await stream.receive() == b"ping"
                addresses = relay.cut(ending)
                endings = wait_for_endings(addresses)
                try:
                    await stream.send(b"again")
                    after: object = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                    after = type(exc)
                try:
                    await anyio.connect_tcp("127.0.0.1", port)
                    reconnect: object = "connected"
                except OSError as exc:
                    reconnect = type(exc)
                await stream.aclose()
            return endings, after, reconnect
        finally:
            CLIENT_SIDE.reset(token)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        endings, after, reconnect = anyio.run(main, backend=backend)
    finally:
        server.close()
        thread.join(5)
    assert list(endings.values()) == [ending]  # type: ignore[attr-defined]
    assert after is (anyio.EndOfStream if ending == "eof" else anyio.BrokenResourceError)
    assert reconnect != "connected" and issubclass(reconnect, OSError)  # type: ignore[arg-type]
    assert "connect" not in socket.socket.__dict__  # connect() is the stdlib's again


def test_the_relay_leaves_the_modules_own_connections_alone() -> None:
    """In the loop's thread, only the client's side (CLIENT_SIDE) is relayed; other threads always are."""
    server = socket.create_server(("127.0.0.1", 0))
    try:
        with intercepting(threading.get_ident()) as relay:
            socket.create_connection(server.getsockname()).close()  # the loop's thread, not the client's side
            assert relay.connections == 0
            worker = threading.Thread(target=lambda: socket.create_connection(server.getsockname()).close())
            worker.start()
            worker.join(5)
            deadline = time.monotonic() + 2
            while relay.connections == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert relay.connections == 1
    finally:
        server.close()


def test_needs_trio_recognises_trio_only_code_under_asyncio() -> None:
    async def trio_code() -> None:
        async with trio.open_nursery():
            pass

    async def main() -> BaseException | None:
        try:
            await trio_code()
        except BaseException as exc:  # what trio raises outside trio varies: AttributeError here
            return exc
        return None

    error = asyncio.run(main())
    assert error is not None and needs_trio(error), error
    assert not needs_trio(RuntimeError("something else"))


def test_the_kits_start_up_limit_is_the_packages_own_server_wait() -> None:
    """A server that starts within the package's own wait (and so runs on Grain) passes the kit at its defaults."""
    package = TEMPLATE / "{{cookiecutter.package_name}}"
    waits = {
        float(match.group(1))
        for path in package.rglob("*.py")
        for match in re.finditer(r"^DEFAULT_STARTUP_TIMEOUT = ([0-9.]+)$", path.read_text(), re.M)
    }
    assert waits == {DEFAULT_STARTUP_TIMEOUT} == {60.0}


def test_could_not_judge_reads_as_one_line() -> None:
    text = str(CouldNotJudge(10, "the client made no TCP connection\n  the kit could see"))
    assert text == "the kit could not judge Rule 10: the client made no TCP connection the kit could see"


def test_a_fault_in_the_kits_relay_is_reported_for_rule_10() -> None:
    """The relay's thread keeps going after a fault of its own; the scenario's verdict would not hold, so it says."""
    obs = Observation("trio", relay_error="RuntimeError: boom (at relay.py:1)")
    with pytest.raises(CouldNotJudge) as unjudged:
        check_dead_server_raises(Target("pkg.mod", probe_name="tests.kit.sworkers._parts:probe"), obs)
    assert unjudged.value.blocking, unjudged.value
    assert (
        str(unjudged.value)
        == "the kit could not judge Rule 10: the kit's relay failed: RuntimeError: boom (at relay.py:1)"
    )


def test_rules_are_thirteen_and_violations_say_rule_and_fix() -> None:
    assert sorted(RULES) == list(range(1, 14))
    text = str(ContractViolation(6, "a server was left running."))
    assert text.startswith("Rule 6 (") and "Fix:" in text


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            while data := connection.recv(100):
                connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_the_relay_plays_a_slow_then_a_stalled_server(backend: str) -> None:
    """Replies held back as long as told; then requests pass and nothing comes back, the connection open."""
    server, thread = _echo_server()

    async def main() -> tuple[float, bool, str, list[object], list[object]]:
        token = CLIENT_SIDE.set(True)
        try:
            with intercepting(threading.get_ident()) as relay:
                stream = await anyio.connect_tcp(*server.getsockname())
                relay.delay_replies(0.2)
                began = time.monotonic()
                await stream.send(b"slow")
                assert await stream.receive() == b"slow"
                late = time.monotonic() - began
                relay.stall()
                await stream.send(b"stalled")
                with anyio.move_on_after(0.3) as waited:
                    await stream.receive()
                state = client_endings(relay.client_addresses)[relay.client_addresses[0]]
                before_close = still_open(relay.client_addresses)
                await stream.aclose()
                return late, waited.cancel_called, state, before_close, still_open(relay.client_addresses)
        finally:
            CLIENT_SIDE.reset(token)

    try:
        late, cut_off, state, before_close, after_close = anyio.run(main, backend=backend)
    finally:
        server.close()
        thread.join(5)
    assert 0.2 <= late < 1.0, late
    assert cut_off and state == "open"  # no reply, no EOF, no reset: only the client's own limit ends it
    assert len(before_close) == 1 and after_close == []  # a socket closed is no longer the client's


def test_missing_settings_and_rate_refusals_are_recognised() -> None:
    assert missing_setting(RuntimeError("no API token: set the environment variable SERVICE_TOKEN")) == "SERVICE_TOKEN"
    assert missing_setting(KeyError("SERVICE_URL")) == "SERVICE_URL"
    assert missing_setting(TypeError("grain_context() got an unexpected keyword argument 'timeout'")) == ""
    refused = RuntimeError("Client error '429 Too Many Requests' for url 'http://h/echo'")
    assert "429" in rate_refusal([refused])
    waited = TimeoutError()
    waited.add_note("when the kit's limit ran out, the call was waiting to retry, in _sleep_for_retry (sdk.py)")
    assert "waiting to retry" in rate_refusal([waited])
    assert rate_refusal([anyio.BusyResourceError("receiving from")]) == ""


class _Client:
    def call(self) -> None:
        raise RuntimeError("bound to another event loop")


def test_an_object_kept_at_module_level_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    module = type(sys)("kitheld.sworker")
    module.client = _Client()
    module.LIMIT = 3  # constants, functions and classes are not state
    monkeypatch.setitem(sys.modules, "kitheld.sworker", module)
    with pytest.raises(RuntimeError) as raised:
        module.client.call()
    assert held_at_module_level(raised.value, ("kitheld",)) == "kitheld.sworker.client"
    with pytest.raises(RuntimeError) as fresh:
        _Client().call()
    assert held_at_module_level(fresh.value, ("kitheld",)) == ""


def test_what_a_run_leaves_to_the_garbage_collector_is_caught_with_it() -> None:
    """An unclosed socket's ResourceWarning and a coroutine never awaited: recorded, not passed on to pytest."""

    async def disconnect() -> None:
        pass

    with GarbageCatcher() as caught:
        leaked = socket.socket()
        del leaked
        never = disconnect()
        del never
        gc.collect()
    assert any(text.startswith("ResourceWarning: unclosed <socket.socket") for text in caught.seen), caught.seen
    assert any("never awaited" in text for text in caught.seen), caught.seen
    assert not any(" at 0x" in text for text in caught.seen)  # the same leftover reads the same every run
