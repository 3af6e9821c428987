"""One Grain-like run of a sworker module, recorded for the rule checks to judge.

Starting servers is what costs time, so each event loop gets one main run
(two instances, the client, the probe alone and V at once, teardown) and one
destructive run (the server is killed under a live client). The checks in
``checks.py`` judge the recordings, one rule each.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio

from .instance import (
    Instance,
    call_probe,
    current_loop,
    msgpack_round_trip,
    running_client,
    running_instance,
    step,
)
from .rules import ContractViolation
from .target import Target

CONCURRENT_ROUNDS = 3
DEAD_SERVER_TIMEOUT = 10.0
GLOB_CHARACTERS = frozenset("*?[]")


@dataclass
class Observation:
    """What one run showed. An ``*_error`` is the violation (or failure) seen at that stage."""

    loop: str
    instance: Instance | None = None
    start_error: AssertionError | None = None
    yield_error: ContractViolation | None = None
    second: Instance | None = None
    second_error: AssertionError | None = None
    fields: dict[str, Any] | None = None
    fields_error: ContractViolation | None = None
    context_error: AssertionError | None = None
    probe_error: AssertionError | None = None
    #: Per round of V concurrent probe calls: the errors, and the worst event-loop stall.
    round_errors: list[list[BaseException]] = field(default_factory=list)
    round_stalls: list[float] = field(default_factory=list)


@dataclass
class DeadServerObservation:
    """What happened to a call after the server was stopped under a live client."""

    loop: str
    blocked_by: AssertionError | None = None
    cannot_stop: bool = False
    stopped: str = ""
    hung: bool = False
    returned: Any = None
    #: The probe's AssertionError: the call returned, but not the right answer (e.g. "" for EOF).
    wrong: str = ""
    raised: BaseException | None = None


def validate_yield(yielded: Any) -> None:
    """Rule 3: the yielded value is a dict with a usable name and without the reserved key."""
    if not isinstance(yielded, dict):
        raise ContractViolation(
            3,
            f"grain_run_sworker yielded a {type(yielded).__name__} ({yielded!r:.80}), not a dict; Grain pops "
            "'name' from it and sends the rest to the head.",
        )
    if "name" not in yielded:
        raise ContractViolation(
            3, f"the yielded dict has no 'name' (keys: {sorted(map(str, yielded))}); Grain fails with KeyError."
        )
    name = yielded["name"]
    if not isinstance(name, str) or not name:
        raise ContractViolation(
            3,
            f"'name' is {name!r} (a {type(name).__name__}); Gnaw drops a registration whose name is not a "
            "non-empty str and the head hangs, or the worker re-registers in a tight loop.",
        )
    if GLOB_CHARACTERS & set(name):
        raise ContractViolation(
            3,
            f"'name' {name!r} has the glob characters {sorted(GLOB_CHARACTERS & set(name))}; Grain matches "
            "names as patterns when workers leave, so this instance is never removed from Gnaw's pool.",
        )
    if "_stype" in yielded:
        raise ContractViolation(
            3, "the yielded dict uses the key '_stype', which Grain reserves for the module's name."
        )


def fields_after_msgpack(target: Target, fields: dict[str, Any]) -> dict[str, Any]:
    """Rule 4: the fields as grain_context receives them; a violation if any does not survive the trip."""
    from .instance import describe

    for key, value in fields.items():
        try:
            received = msgpack_round_trip({key: value}, target.module_name)
        except (TypeError, OverflowError, ValueError) as exc:
            raise ContractViolation(
                4,
                f"the field {key!r} = {value!r:.80} does not survive msgpack ({describe(exc)}); Grain crashes "
                "the head or the worker when it sends it.",
            ) from None
        for path, sent, got in _type_changes(value, received[key], repr(key)):
            raise ContractViolation(
                4,
                f"the field {path} is yielded as a {type(sent).__name__} ({sent!r:.60}) but arrives as a "
                f"{type(got).__name__} ({got!r:.60}) after msgpack.",
            )
    return msgpack_round_trip(fields, target.module_name)


def _type_changes(sent: Any, got: Any, path: str) -> list[tuple[str, Any, Any]]:
    if type(sent) is not type(got):
        return [(path, sent, got)]
    changes: list[tuple[str, Any, Any]] = []
    if isinstance(sent, dict):
        for key in sent:
            changes += _type_changes(sent[key], got.get(key), f"{path}[{key!r}]")
    elif isinstance(sent, list):
        for index, (a, b) in enumerate(zip(sent, got, strict=False)):
            changes += _type_changes(a, b, f"{path}[{index}]")
    return changes


class StallMonitor:
    """The longest time the event loop took to wake a sleeping task, since the last reset."""

    INTERVAL = 0.005

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            before = time.monotonic()
            await anyio.sleep(self.INTERVAL)
            self.worst = max(self.worst, time.monotonic() - before - self.INTERVAL)


async def concurrent_probes(target: Target, client: Any, count: int, round_number: int) -> list[BaseException]:
    """``count`` probe calls at once on one client; the errors (every call runs to its end)."""
    errors: list[BaseException] = []

    async def one(variant: int) -> None:
        try:
            await call_probe(target, client, variant)
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, 1 + round_number * count + index)
    return errors


async def _exercise_client(target: Target, observation: Observation) -> None:
    """Start the client; call the probe alone, then V at once for a few rounds, watching for stalls."""
    assert observation.fields is not None
    try:
        async with running_client(target, observation.fields) as client:
            if target.probe is not None:
                await _probe_rounds(target, client, observation)
    except AssertionError as failure:
        observation.context_error = failure


async def _probe_rounds(target: Target, client: Any, observation: Observation) -> None:
    try:
        with step(None, "the probe, called alone"):
            await call_probe(target, client)
    except AssertionError as failure:
        observation.probe_error = failure
        return
    monitor = StallMonitor()
    async with anyio.create_task_group() as group:
        await group.start(monitor.run)
        for round_number in range(CONCURRENT_ROUNDS):
            monitor.worst = 0.0
            errors = await concurrent_probes(target, client, target.capacity, round_number)
            observation.round_errors.append(errors)
            observation.round_stalls.append(monitor.worst)
        group.cancel_scope.cancel()


async def observe(target: Target) -> Observation:
    """Run the module as Grain does, once, and record what each stage showed."""
    import inspect

    observation = Observation(current_loop())
    try:
        async with running_instance(target) as instance:
            observation.instance = instance
            try:
                validate_yield(instance.yielded)
            except ContractViolation as violation:
                observation.yield_error = violation
                return observation
            if not target.is_backendless:
                await _second_instance(target, observation)
            try:
                observation.fields = fields_after_msgpack(target, instance.fields)
            except ContractViolation as violation:
                observation.fields_error = violation
                return observation
            try:
                inspect.signature(target.module.grain_context).bind(**observation.fields)
            except TypeError as exc:
                observation.context_error = ContractViolation(
                    5,
                    f"grain_context does not accept the yielded fields {sorted(observation.fields)}: {exc}; "
                    "Grain calls grain_context(**fields) and the head crashes with TypeError.",
                )
                return observation
            await _exercise_client(target, observation)
    except AssertionError as failure:
        if observation.instance is None:
            observation.start_error = failure
        else:
            observation.context_error = observation.context_error or failure
    if target.is_backendless and observation.instance and observation.yield_error is None:
        await _second_instance(target, observation)  # one instance per head: a second one, afterwards
    return observation


async def _second_instance(target: Target, observation: Observation) -> None:
    try:
        async with running_instance(target) as second:
            observation.second = second
    except AssertionError as failure:
        observation.second_error = failure


async def observe_dead_server(target: Target) -> DeadServerObservation:
    """Start an instance and its client, stop the server, and see what the next call does."""
    observation = DeadServerObservation(current_loop())
    with ExitStack() as service:
        service.enter_context(target.environment())
        try:
            async with running_instance(target) as instance:
                validate_yield(instance.yielded)
                fields = fields_after_msgpack(target, instance.fields)
                async with running_client(target, fields) as client:
                    with step(None, "the probe, before the server stopped"):
                        await call_probe(target, client)
                    if instance.footprint.processes:
                        observation.stopped = kill_processes(instance.footprint.processes)
                    elif target.environment_name:
                        service.close()
                        observation.stopped = f"the service run by {target.environment_name}"
                    else:
                        observation.cannot_stop = True
                        return observation
                    try:
                        with anyio.fail_after(DEAD_SERVER_TIMEOUT):
                            observation.returned = await call_probe(target, client, 1)
                    except TimeoutError:
                        observation.hung = True
                    except AssertionError as wrong:
                        observation.wrong = str(wrong) or "the probe rejected the answer"
                    except Exception as exc:
                        observation.raised = exc
        except AssertionError as failure:
            observation.blocked_by = failure
    return observation


def kill_processes(pids: frozenset[int]) -> str:
    """SIGKILL each process and its group, and wait until they are gone.

    Unlike ``Footprint.kill`` it never reaps them: the module's own cleanup still waits on its process.
    """
    own_group = os.getpgid(0)
    for pid in pids:
        try:
            group = os.getpgid(pid)
            if group != own_group:  # never the test runner's own group
                os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.01)
    return f"the server process(es) {sorted(pids)}"


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


async def observed(target: Target) -> Observation:
    """The main observation of ``target`` under the running event loop (made once, then reused)."""
    key = f"main:{current_loop()}"
    if key not in target.observations:
        target.observations[key] = await observe(target)
    result: Observation = target.observations[key]
    return result


async def observed_dead_server(target: Target) -> DeadServerObservation:
    """The dead-server observation of ``target`` under the running event loop (made once)."""
    key = f"dead:{current_loop()}"
    if key not in target.observations:
        target.observations[key] = await observe_dead_server(target)
    result: DeadServerObservation = target.observations[key]
    return result
