"""Unit tests of the kit's pieces: msgpack replay, credential finder, footprint, stall monitor, rules."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import anyio
import psutil
import pytest
from sworker_conformance import RULES, ContractViolation
from sworker_conformance.checks import find_long_lived_credential
from sworker_conformance.footprint import LINEAGE, LINEAGE_ENV, Footprint
from sworker_conformance.instance import msgpack_round_trip, needs_asyncio
from sworker_conformance.observation import StallMonitor, fields_after_msgpack, validate_yield
from sworker_conformance.target import Target


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


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_stall_monitor(backend: str) -> None:
    async def main() -> tuple[float, float]:
        monitor = StallMonitor()
        async with anyio.create_task_group() as group:
            await group.start(monitor.run)
            await anyio.sleep(0.05)
            calm = monitor.worst
            monitor.worst = 0.0
            time.sleep(0.2)  # noqa: ASYNC251  (blocks the loop on purpose)
            await anyio.sleep(0.03)
            blocked = monitor.worst
            group.cancel_scope.cancel()
        return calm, blocked

    calm, blocked = anyio.run(main, backend=backend)
    assert calm < 0.1 and blocked >= 0.15


def test_rules_are_twelve_and_violations_say_rule_and_fix() -> None:
    assert sorted(RULES) == list(range(1, 13))
    text = str(ContractViolation(6, "a server was left running."))
    assert text.startswith("Rule 6 (") and "Fix:" in text
