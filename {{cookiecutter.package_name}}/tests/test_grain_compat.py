"""The compatibility layer for Grain's head (``grain_compat``): where it patches, and what it does.

The end-to-end proof (a head losing one of two instances mid-batch) is in
``test_instance_loss.py``; these tests pin the rules around it: it is in place once the package
is imported, only on the Grain it was verified against, refuses anything else with one
log line and patches nothing, and hands Gnaw the right answer in each race it covers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from grain.remote_exer import RemoteExecutor

from {{ cookiecutter.package_name }} import grain_compat
from {{ cookiecutter.package_name }}.grain_compat import DONE, DROPPED, FAILED, InstancePool, handshake


@pytest.fixture
def fresh_layer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The layer removed, so a test can install it afresh; put back as it was afterwards."""
    monkeypatch.delenv(grain_compat.DISABLE_ENV, raising=False)
    grain_compat.uninstall()
    yield
    grain_compat.uninstall()
    grain_compat.install()


def test_importing_the_package_puts_the_layer_in_place_on_the_verified_grain() -> None:
    why = grain_compat.refusal()
    assert why is None, (
        f"the compat layer refuses the installed Grain: {why}. Check that Grain still crashes (or not) when an "
        "instance is lost (tests/loss_support.py measure --without-layer), then record its fingerprints() in "
        "grain_compat.VERIFIED, or remove the layer if Grain is fixed"
    )
    assert RemoteExecutor.run_sworker_clients is grain_compat.run_sworker_clients


@pytest.mark.parametrize("change", ["version", "code"])
def test_any_other_grain_is_refused_in_one_line_and_nothing_is_patched(
    fresh_layer: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    original = RemoteExecutor.run_sworker_clients
    verified = dict(grain_compat.VERIFIED)
    if change == "version":
        verified = {"0.0.1": verified.popitem()[1]}
    else:
        version, digests = verified.popitem()
        verified = {version: {**digests, "grain.delayed.relay": "0" * 64}}
    monkeypatch.setattr(grain_compat, "VERIFIED", verified)
    with caplog.at_level(logging.INFO, logger=grain_compat.__name__):
        assert grain_compat.install() is False
    assert RemoteExecutor.run_sworker_clients is original
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "grain_compat is not installed" in record.getMessage()
    said = "not a version it was verified on" if change == "version" else "grain.delayed.relay is not the code"
    assert said in record.getMessage()


def test_it_can_be_switched_off(fresh_layer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    original = RemoteExecutor.run_sworker_clients
    monkeypatch.setenv(grain_compat.DISABLE_ENV, "off")
    assert grain_compat.install() is False
    assert RemoteExecutor.run_sworker_clients is original


class Channel:
    """Gnaw's approval channel, as the head sees it: messages in, reports out."""

    def __init__(self, incoming: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        self.incoming = list(incoming)
        self.sent: list[dict[str, Any]] = []
        self._so = self

    async def send_all(self, data: bytes) -> None:  # what grain.conn_msgp.send_packet writes to
        self.sent.append({"raw": data})

    async def receive(self) -> dict[str, Any]:
        return self.incoming.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def test_the_handshake_skips_instances_announced_before_gnaws_hsack() -> None:
    # Gnaw lists the head before it sends hsAck: an instance registering then is announced first.
    fields = {"_stype": "x", "host": "h"}
    channel = Channel([{"cmd": "pushSWorker", "name": "a", "obj": fields}, {"cmd": "hsAck", "obj": {"a": fields}}])
    assert trio.run(handshake, channel, "1") == {"a": fields}
    with pytest.raises(RuntimeError, match="not 'hsAck'"):
        trio.run(handshake, Channel([{"cmd": "hsSynAck"}]), "1")


class Executor:
    """The parts of Grain's RemoteExecutor the layer uses."""

    def __init__(self, tids: list[int]) -> None:
        self.fnd: dict[int, Any] = dict.fromkeys(tids, "fn")
        self.side_c = Channel()
        self.delivered: list[tuple[int, Any]] = []
        self.push_result = self
        self.counted = 0  # tasklets counted as ended (Grain's WaitGroup)
        self._wg = self

    def send_nowait(self, item: tuple[int, Any]) -> None:
        self.delivered.append(item)

    def done(self) -> None:
        self.counted += 1


class Instance:
    """An instance's client as Grain's head holds it: ``execf`` runs the tasklet."""

    def __init__(self, outcomes: list[tuple[bool, Any]], gate: trio.Event | None = None) -> None:
        self.outcomes = outcomes
        self.gate = gate

    async def execf(self, tid: int, res: Any, fn: Any) -> tuple[bool, Any]:
        if self.gate is not None:
            await self.gate.wait()
        return self.outcomes.pop(0)


def statuses(executor: Executor) -> list[tuple[int, str, str]]:
    return [(m["tid"], m["result"], m["exception"]) for m in executor.side_c.sent]


def pool_of(executor: Executor, **instances: Instance) -> InstancePool:
    pool = InstancePool(executor, None, set())  # type: ignore[arg-type]
    pool.clients.update(instances)
    return pool


def test_a_tasklet_for_an_instance_that_is_gone_goes_back_to_gnaw() -> None:
    executor = Executor([7])
    trio.run(pool_of(executor).run_tasklet, 7, None, "gone")
    assert statuses(executor) == [(7, "gone", FAILED)] and not executor.delivered and 7 in executor.fnd


def test_a_tasklet_whose_result_is_in_is_not_run_again() -> None:
    executor = Executor([])
    instance = Instance([])
    trio.run(pool_of(executor, b=instance).run_tasklet, 7, None, "b")
    assert statuses(executor) == [(7, "b", DROPPED)] and not executor.delivered


def test_a_tasklet_that_ends_twice_is_delivered_once() -> None:
    executor = Executor([7])

    async def main() -> None:
        gate = trio.Event()
        pool = pool_of(executor, a=Instance([(True, 49)], gate), b=Instance([(True, 49)], gate))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run_tasklet, 7, None, "a")  # dispatched, then again on another instance
            nursery.start_soon(pool.run_tasklet, 7, None, "b")
            await trio.testing.wait_all_tasks_blocked()
            gate.set()

    trio.run(main)
    assert executor.delivered == [(7, 49)] and executor.counted == 1 and not executor.fnd
    assert sorted(statuses(executor)) == [(7, "a", DONE), (7, "b", DONE)]


def test_a_run_that_fails_after_another_delivered_is_not_retried() -> None:
    executor = Executor([7])

    async def main() -> None:
        gate = trio.Event()
        pool = pool_of(executor, a=Instance([(True, 49)]), b=Instance([(False, ("trace", OSError("gone")))], gate))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run_tasklet, 7, None, "b")  # its instance is being lost
            await trio.testing.wait_all_tasks_blocked()
            await pool.run_tasklet(7, None, "a")  # Gnaw sent it again: it ends first
            gate.set()

    trio.run(main)
    assert executor.delivered == [(7, 49)] and executor.counted == 1
    assert statuses(executor) == [(7, "a", DONE), (7, "b", DROPPED)]


def test_a_failed_run_goes_back_to_gnaw(caplog: pytest.LogCaptureFixture) -> None:
    executor = Executor([7])
    trio.run(pool_of(executor, a=Instance([(False, ("trace", OSError("gone")))])).run_tasklet, 7, None, "a")
    assert statuses(executor) == [(7, "a", FAILED)] and not executor.delivered and 7 in executor.fnd
    assert "gone" in caplog.text
