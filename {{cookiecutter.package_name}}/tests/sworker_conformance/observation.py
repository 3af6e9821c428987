"""One Grain-like run of a sworker module per event loop, recorded for the rule checks to judge.

A run (``run_observation``) happens in a thread of its own, with its own event
loop: the module's instances start (two at once for a server module, as two
workers would), the client starts and the probe is called alone, then V at once
for a few rounds while ``LoopWatch`` watches the loop; then a fresh client
through the kit's relay gets one more call with its reply held back (a slow
server: a sync call on the loop shows, whatever the network's speed), and one
call on a stalled server (no reply at all: only the client's own limit ends it);
then the dead-server scenarios (EOF, then a reset, each on purpose through the
relay); each relayed client is torn down on its own, and none of its sockets may
outlive it; then everything is torn down by cancellation, in one wait each.

What the module's objects leave to the garbage collector (an unclosed socket, an
exception ignored in a ``__del__`` or a coroutine never awaited) is caught while
the run's objects are collected at its end, and recorded with the run (rule 6),
never left to surface in some later test as a failure of the kit.

Every wait has a limit. Inside the loop, start-up and calls are cancelled at
theirs; the pytest thread watches each stage's deadline as well, so that a
teardown that ignores cancellation, or a loop blocked for good, is recorded as
the violation it is: the kit kills what the module started and moves on
without that thread. A wait it has judged once is never repeated: the asyncio
run (portability) skips what overran under trio, and all of a module's runs
share one time budget: start-up limit + cleanup limit + ``VERDICT_SLACK``.
"""

from __future__ import annotations

import copy
import gc
import inspect
import re
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .footprint import Footprint
from .instance import (
    Record,
    call_probe,
    classify,
    context_timed_out,
    daemon,
    describe,
    held_at_module_level,
    innermost_traceback,
    msgpack_round_trip,
    require_async_cm,
    require_no_arguments,
    start_timed_out,
    walk_errors,
)
from .relay import CLIENT_SIDE, Relay, redirecting, still_open, stop_redirecting, wait_for_endings
from .rules import ContractViolation, Portability
from .target import CALL_LIMIT_SLACK, Target, environ
from .watch import LoopWatch, Stall

CONCURRENT_ROUNDS = 3
#: How late the relay makes each reply in the slow round (rule 7): above the 100 ms a stall may last.
REPLY_DELAY = 0.2
#: How long the first call after the server stopped may take to raise (rule 10).
DEAD_CALL_LIMIT = 5.0
#: How long past a stage's own limit the pytest thread waits before it stops waiting for the loop.
GRACE = 0.5
POLL = 0.02
GLOB_CHARACTERS = frozenset("*?[]")
START_PHASE = "while grain_context(**fields) started"
FIRST_CALL_PHASE = "the first probe call"
ENDINGS = ("eof", "reset")
ENDING_TEXT = {
    "eof": "EOF: the server closed the connection",
    "reset": "a reset: the connection was reset by the server",
}


@dataclass
class DeadEnding:
    """What the first call did after the kit ended the client's connections one way (``Observation.dead``'s key)."""

    #: Why this scenario says nothing (no connection to cut, a probe that failed through the relay).
    not_judged: str = ""
    connections: int = 0
    hung: bool = False
    returned: Any = None
    returned_normally: bool = False
    #: The probe's AssertionError: the call returned, but not the right answer (e.g. "" for EOF).
    wrong: str = ""

    @property
    def broken(self) -> bool:
        return not self.not_judged and (self.hung or bool(self.wrong) or self.returned_normally)


@dataclass
class StalledCall:
    """What one call did on a stalled server: connection open, no byte back (rule 13)."""

    #: It neither returned nor raised within the stated limit and the kit's slack.
    hung: bool = False
    returned: Any = None
    returned_normally: bool = False
    wrong: str = ""
    raised: str = ""
    seconds: float = 0.0


@dataclass
class Stage:
    """What the run is waiting for, until when, and which rule an overrun breaks."""

    label: str
    deadline: float
    rule: int | None
    limit: float


@dataclass
class Plan:
    """What a run does: the asyncio run leaves out what overran or failed under trio."""

    #: Why the run is not made at all ("": it is).
    why_not: str = ""
    calls: bool = True
    endings: tuple[str, ...] = ENDINGS
    #: Why some ending (or every call) is left out.
    why_fewer: str = ""
    #: Whether the call on a stalled server is made (rule 13), and why not.
    stall: bool = True
    why_no_stall: str = ""


@dataclass
class Observation:
    """What one run showed. An ``*_error`` is the violation (or failure) seen at that stage."""

    loop: str
    not_run: str = ""
    kit_error: str = ""
    instance: Record | None = None
    second: Record | None = None
    start_error: AssertionError | None = None
    yield_error: ContractViolation | None = None
    second_error: AssertionError | None = None
    fields: dict[str, Any] | None = None
    fields_error: ContractViolation | None = None
    context_error: AssertionError | None = None
    #: Why the client is not judged under asyncio: an object kept at module level, made in the trio run.
    shared_across_runs: str = ""
    #: Why the probe could not be used on a live instance (one line), if it could not.
    probe_error: str = ""
    #: The rule the probe call broke, where its failure is one (Rule 7: it needs asyncio).
    probe_violation: ContractViolation | None = None
    calls_skipped: str = ""
    calls_hung: bool = False
    #: Per round of V concurrent probe calls: the errors (and last, the slow call's, its reply held back).
    round_errors: list[list[BaseException]] = field(default_factory=list)
    #: The phase of the call with its reply held back (rule 7 at any network speed), once it ran.
    slow_phase: str = ""
    #: Why the relayed client (slow round, stalled server) said nothing, if it did not.
    relayed_not_judged: str = ""
    stalled: StalledCall | None = None
    #: Why no call on a stalled server was made, if none was.
    stall_skipped: str = ""
    #: A relayed client's sockets still open after its grain_context was torn down (rule 6).
    outliving: str = ""
    #: What the module's objects left to the garbage collector: ResourceWarnings, ignored exceptions.
    garbage: list[str] = field(default_factory=list)
    #: What the module left running after it failed to start (the kit killed it).
    left_after_failed_start: str = ""
    #: The phases the loop was watched in, in order (rule 7), and the stalls seen.
    call_phases: list[str] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    dead: dict[str, DeadEnding] = field(default_factory=dict)
    #: A fault in the thread of the kit's relay (the dead-server scenarios then say nothing).
    relay_error: str = ""
    dead_skipped: str = ""
    clients: list[Record] = field(default_factory=list)
    leftover_description: str = ""
    #: The stage the kit stopped waiting for, and what it killed then.
    abandoned: Stage | None = None
    abandoned_stall: Stall | None = None
    killed: str = ""
    portability: str = ""
    seconds: float = 0.0

    @property
    def blocked(self) -> Stall | None:
        """The stall the kit stopped waiting in, if the watchdog saw where the loop was blocked."""
        stall = self.abandoned_stall
        return stall if stall is not None and stall.where is not None else None

    def snapshot(self) -> Observation:
        """A copy that the run's thread, if it goes on, no longer changes."""
        copied = copy.copy(self)
        for name in ("round_errors", "call_phases", "stalls", "clients", "garbage"):
            setattr(copied, name, list(getattr(self, name)))
        copied.dead = dict(self.dead)
        return copied


class Supervisor:
    """The stages of a run, shared by its thread (which enters them) and the pytest thread (which watches)."""

    def __init__(self, budget_deadline: float) -> None:
        self.budget_deadline = budget_deadline
        self._stages: list[Stage] = []
        self.abandoned = False
        self.watch: LoopWatch | None = None
        self.relays: list[Relay] = []

    @contextmanager
    def stage(self, label: str, limit: float, rule: int | None = None, then: float = 0.0) -> Iterator[Stage]:
        """Wait for ``label`` at most ``limit`` seconds, and ``then`` more for its cleanup once cancelled."""
        entered = Stage(label, min(time.monotonic() + limit + then + GRACE, self.budget_deadline), rule, limit)
        self._stages.append(entered)
        try:
            yield entered
        finally:
            self._stages.remove(entered)

    def overdue(self) -> Stage | None:
        now = time.monotonic()
        # A loop blocked for longer than a stage's own limit will not cancel anything: stop waiting then.
        blocked = now - self.watch.last_beat if self.watch is not None else 0.0
        for stage in list(self._stages):
            if now > stage.deadline or blocked > stage.limit + GRACE:
                return stage
        if now > self.budget_deadline:
            return Stage("the kit's time budget for this module", self.budget_deadline, None, 0.0)
        return None

    def check(self) -> None:
        """Stop the run's thread at its next step once the pytest thread has stopped waiting for it."""
        if self.abandoned:
            raise _Abandoned


class _Abandoned(Exception):
    """The pytest thread moved on: this run's thread stops at its next step."""


def run_observation(target: Target, loop: str, plan: Plan, budget_deadline: float) -> Observation:
    """Run the module once under ``loop`` (in a thread), bounded by its stages and ``budget_deadline``."""
    observation = Observation(loop)
    if plan.why_not:
        observation.not_run = plan.why_not
        return observation
    supervisor = Supervisor(budget_deadline)
    before = Footprint.now()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            anyio.run(_observe, target, observation, supervisor, plan, before, backend=loop)
        except _Abandoned:
            pass
        except BaseException as exc:  # a fault of the kit's own: reported, not raised in this thread
            if not supervisor.abandoned:
                failure.append(exc)

    started = time.monotonic()
    with GarbageCatcher():  # what earlier runs left and is collected only now: not this run's
        gc.collect()
    # What the module leaks (a server process it never stops, a socket, a coroutine never awaited)
    # warns or is "ignored" when it is collected: the kit records it with this run (GarbageCatcher).
    with GarbageCatcher() as garbage, environ(target.during_runs()):
        thread = threading.Thread(target=main, name=f"sworker-kit-{loop}", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(POLL)
                overdue = supervisor.overdue()
                if overdue is not None and thread.is_alive():
                    observation = _abandon(observation, supervisor, overdue, before)
                    break
            else:
                _reap_the_rest(observation, before)  # before collecting: a Popen reaped does not warn
                _let_go_of_the_modules_objects(observation)
                gc.collect()  # what the module left warns now, caught here, not in a later test
        except BaseException:  # e.g. Ctrl-C: leave nothing of the module running
            _abandon(observation, supervisor, Stage("an interrupted run", 0.0, None, 0.0), before)
            raise
        finally:
            _reap_the_rest(observation, before)
    observation.garbage += garbage.seen
    if failure:
        error = failure[0]
        observation.kit_error = f"{describe(error)}{_where(error)}"
    observation.seconds = time.monotonic() - started
    return observation


def _reap_the_rest(observation: Observation, before: Footprint) -> None:
    """Whatever stage ended the run (a failed start too), kill what the module started and say so (rule 6)."""
    left = Footprint.reap_since(before)
    if not left:
        return
    if observation.instance is not None and observation.instance.started:
        observation.leftover_description = observation.leftover_description or left
    else:
        observation.left_after_failed_start = left


#: A memory address in a repr: left out, so that the same leftover reads the same every run.
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
#: What counts as left behind: an unclosed resource, a coroutine that never ran (a close or a disconnect).
_LEFT_BEHIND = re.compile(r"unclosed|still running|never awaited|was garbage collected", re.I)


class GarbageCatcher:
    """Records, while a run lasts, the warnings and "Exception ignored in" reports of what it leaves behind.

    Both hooks are process-wide (the run is in another thread). Other warnings (a library's
    DeprecationWarning) keep their filters: one that is an error (``-W error``) raises in the module's
    code as before; one that would only be shown is dropped, as the module's own business.
    """

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._warnings = warnings.catch_warnings(record=True)

    def __enter__(self) -> GarbageCatcher:
        self._previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        self._recorded = self._warnings.__enter__()
        warnings.simplefilter("always", ResourceWarning)
        warnings.simplefilter("always", RuntimeWarning)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._warnings.__exit__(None, None, None)
        sys.unraisablehook = self._previous_hook
        for caught in self._recorded or []:
            text = f"{caught.category.__name__}: {caught.message}"
            if _LEFT_BEHIND.search(text):
                self._add(text)
            # Any other warning (a library's DeprecationWarning) is the module's own business.

    def _unraisable(self, unraisable: Any) -> None:
        what = unraisable.err_msg or "Exception ignored in"
        error = describe(unraisable.exc_value) if unraisable.exc_value is not None else "an error"
        self._add(f"{what}: {unraisable.object!r:.120}: {error}")

    def _add(self, text: str) -> None:
        text = _ADDRESS.sub("", " ".join(text.split()))
        if text not in self.seen:
            self.seen.append(text)


def _let_go_of_the_modules_objects(observation: Observation) -> None:
    """Drop what the observation holds of the module's objects (its clients, the frames of its errors),
    so that collecting them happens now, while the run's leftovers are caught."""
    for record in observation.clients:
        record.yielded = None
    for value in list(vars(observation).values()):
        for item in value if isinstance(value, list) else [value]:
            for error in item if isinstance(item, list) else [item]:
                if isinstance(error, BaseException):
                    _drop_frames(error)


def _drop_frames(error: BaseException, seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(error) in seen:
        return
    seen.add(id(error))
    error.__traceback__ = None
    for linked in (error.__cause__, error.__context__, *getattr(error, "exceptions", ())):
        if isinstance(linked, BaseException):
            _drop_frames(linked, seen)


def _abandon(observation: Observation, supervisor: Supervisor, stage: Stage, before: Footprint) -> Observation:
    """Stop waiting for the run's thread: keep what it saw, kill what the module started."""
    supervisor.abandoned = True
    snapshot = observation.snapshot()
    snapshot.abandoned = stage
    if supervisor.watch is not None:
        snapshot.abandoned_stall = supervisor.watch.ongoing()
        supervisor.watch.stop()
    for relay in supervisor.relays:
        stop_redirecting(relay)
        relay.close()
    snapshot.relay_error = snapshot.relay_error or _relay_failure(supervisor.relays)
    snapshot.killed = Footprint.reap_since(before)
    return snapshot


def _relay_failure(relays: list[Relay]) -> str:
    """What went wrong in a relay's thread (its first fault), or ""."""
    error = next((relay.error for relay in relays if relay.error is not None), None)
    return "" if error is None else f"{describe(error)}{_where(error)}"


def _where(error: BaseException) -> str:
    traceback = innermost_traceback(error)
    return "" if traceback is None else f" (at {traceback.tb_frame.f_code.co_filename}:{traceback.tb_lineno})"


# -- the run, in its own thread and event loop -------------------------------------------------


async def _observe(target: Target, obs: Observation, sup: Supervisor, plan: Plan, before: Footprint) -> None:
    watch = LoopWatch(own_modules=target.own_modules())
    obs.stalls = watch.stalls
    sup.watch = watch
    async with anyio.create_task_group() as kit:
        await kit.start(watch.run)
        try:
            await _run(target, obs, sup, plan, before, watch)  # closes its relays; _abandon, if it never returns
        finally:
            kit.cancel_scope.cancel()


async def _run(
    target: Target, obs: Observation, sup: Supervisor, plan: Plan, before: Footprint, watch: LoopWatch
) -> None:
    module = target.module
    backendless = target.is_backendless
    records = [Record("the instance")] if backendless else [Record("the instance"), Record("a second instance")]
    obs.instance = records[0]
    obs.second = None if backendless else records[1]
    async with _TornDown(sup, "grain_run_sworker()'s teardown", target.cleanup_limit) as workers:
        await _start(target, obs, sup, workers, records)
        if obs.start_error is not None or obs.yield_error is not None:
            return
        if not backendless:
            obs.second_error = records[1].start_error
        if not _fields_usable(target, obs, module):
            return
        assert obs.fields is not None
        try:
            async with _TornDown(sup, "grain_context(**fields)'s teardown", target.cleanup_limit) as clients:
                await _client_work(target, obs, sup, plan, clients, watch)
        finally:
            for relay in sup.relays:
                relay.close()  # before the leftover check: the relay's sockets are the kit's
            obs.relay_error = _relay_failure(sup.relays)
    sup.check()
    _leftover(obs, before)
    if backendless and obs.start_error is None and obs.yield_error is None:
        await _second_backendless_instance(target, obs, sup)


_NOT_STARTED: Any = object()


class _TornDown:
    """A task group of daemons, cancelled on exit; its teardown is a stage with a limit (rule 6)."""

    def __init__(self, sup: Supervisor, label: str, limit: float) -> None:
        self.sup, self.label, self.limit = sup, label, limit
        self._group = anyio.create_task_group()

    async def __aenter__(self) -> TaskGroup:
        return await self._group.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        with self.sup.stage(self.label, self.limit, rule=6):
            self._group.cancel_scope.cancel()
            return await self._group.__aexit__(*exc_info)


async def _start(target: Target, obs: Observation, sup: Supervisor, workers: TaskGroup, records: list[Record]) -> None:
    """Start every instance at once (as workers do), within the start-up limit (rule 9)."""
    module = target.module
    try:
        require_no_arguments(module)
    except ContractViolation as violation:
        obs.start_error = violation
        return

    async def start_one(record: Record) -> None:
        began = time.monotonic()

        def factory() -> AbstractAsyncContextManager[Any]:
            return require_async_cm(module.grain_run_sworker(), "grain_run_sworker()")

        try:
            await workers.start(daemon, record, factory, True)
            record.started_in = time.monotonic() - began
        except anyio.get_cancelled_exc_class():
            raise
        except (Exception, BaseExceptionGroup, SystemExit) as exc:
            record.start_error = _start_failure(exc, "grain_run_sworker() during start-up", 9, obs)

    limit = target.startup_timeout
    with sup.stage("grain_run_sworker() to start", limit, rule=9, then=target.cleanup_limit):
        with anyio.move_on_after(limit) as deadline:
            async with anyio.create_task_group() as starting:
                for record in records:
                    starting.start_soon(start_one, record)
    sup.check()
    first = records[0]
    if deadline.cancel_called and not all(record.started for record in records):
        obs.start_error = start_timed_out(limit)  # whatever it raised once cancelled (often Cancelled)
        return
    if first.start_error is not None:
        obs.start_error = first.start_error
        return
    try:
        validate_yield(first.yielded)
    except ContractViolation as violation:
        obs.yield_error = violation
        return
    for other in records[1:]:
        if other.started:
            try:
                validate_yield(other.yielded)
            except ContractViolation as violation:
                obs.yield_error = violation


def _start_failure(exc: BaseException, what: str, rule: int, obs: Observation) -> AssertionError:
    """What an error from the module while it starts means, under the running loop."""
    found = classify(exc, what, obs.loop)
    if isinstance(found, Portability):
        obs.portability = found.observed
    if found is not None:
        return found
    where = "the head would crash" if rule == 5 else "the worker would crash, and the head wait for it with no error"
    missing = missing_setting(exc)
    if missing:
        return ContractViolation(
            rule,
            f"{what} raised {describe(exc)} (under {obs.loop}): it names a setting missing from the environment "
            f"({missing}); under Grain {where}.",
            "give the kit's run what the head's environment has: --sworker-environment module:function (a context "
            "manager that starts what the module needs and yields its variables), or export the variables before "
            "pytest; on Grain, set them in the head's environment (for a server sworker, the worker's too). "
            "Nothing here says the fields and the parameters differ.",
        )
    return ContractViolation(rule, f"{what} raised {describe(exc)} (under {obs.loop}); under Grain {where}.")


#: How an error names a setting that is not there (an SDK's MissingSettingError, "set the variable X").
_MISSING_SETTING = re.compile(
    r"missing ?setting|not set\b|\bset the (environment )?variable|environment variable|\bis required\b|must be set"
    r"|no (api[_ ]?key|token|url|credentials?)\b",
    re.I,
)
_ENVIRONMENT_NAME = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b")


def missing_setting(exc: BaseException) -> str:
    """The missing setting an error from grain_context names (e.g. "KIT_API_TOKEN"), or ""."""
    for error in walk_errors(exc):
        text = f"{type(error).__name__}: {error}"
        name = _ENVIRONMENT_NAME.search(str(error))
        if _MISSING_SETTING.search(text) or (isinstance(error, KeyError) and name):
            return name.group(0) if name else " ".join(text.split())[:120]
    return ""


def _fields_usable(target: Target, obs: Observation, module: Any) -> bool:
    """Rules 4 and 5 before any call: the fields survive msgpack and grain_context accepts them."""
    assert obs.instance is not None
    try:
        obs.fields = fields_after_msgpack(target, obs.instance.fields)
    except ContractViolation as violation:
        obs.fields_error = violation
        return False
    entry = getattr(module, "grain_context", None)
    if not callable(entry):
        obs.context_error = ContractViolation(2, f"{target.module_name} has no callable grain_context; Grain calls it.")
        return False
    try:
        inspect.signature(entry).bind(**obs.fields)
    except TypeError as exc:
        obs.context_error = ContractViolation(
            5,
            f"grain_context does not accept the yielded fields {sorted(obs.fields)}: {exc}; Grain calls "
            "grain_context(**fields) and the head crashes with TypeError.",
        )
        return False
    except ValueError:
        pass  # no signature to read: let the call say
    return True


async def _client_work(
    target: Target, obs: Observation, sup: Supervisor, plan: Plan, clients: TaskGroup, watch: LoopWatch
) -> None:
    client = await _start_client(target, obs, sup, clients, watch, Record("the client"), START_PHASE)
    if client is _NOT_STARTED or target.probe is None:
        return
    await _calls(target, obs, sup, plan, client, watch)
    if obs.calls_skipped:
        return
    if obs.probe_error or obs.calls_hung:
        obs.dead_skipped = obs.probe_error or "the probe calls did not finish on a live instance"
        return
    await _slow_then_stalled(target, obs, sup, plan, watch)
    if not plan.endings:
        obs.dead_skipped = plan.why_fewer
    for ending in plan.endings:
        result = await _dead_server(target, obs, sup, watch, ending)
        obs.dead[ending] = result
        if result.broken:
            break  # Rule 10 is judged: the other ending is not needed


@asynccontextmanager
async def _relayed_client(
    target: Target, obs: Observation, sup: Supervisor, watch: LoopWatch, label: str
) -> AsyncIterator[tuple[Any, Relay]]:
    """A fresh client whose TCP connections all go through a relay of the kit's (``_NOT_STARTED`` if it did
    not start), torn down on its own on exit; then none of its sockets may still be open (rule 6)."""
    relay = Relay().start()
    sup.relays.append(relay)
    token = CLIENT_SIDE.set(True)
    record = Record(label)
    try:
        with redirecting(relay, loop_thread=threading.get_ident()):
            async with _TornDown(sup, f"{label}'s teardown", target.cleanup_limit) as group:
                yield await _start_client(target, obs, sup, group, watch, record, None), relay
            sup.check()
            outliving = still_open(relay.client_addresses) if record.started else []
            if outliving and not obs.outliving:
                still = _still_open(len(outliving), relay.connections)
                obs.outliving = f"{still} after the grain_context of {label} (relayed by the kit) had been torn down"
    finally:
        CLIENT_SIDE.reset(token)
        relay.close()


def _still_open(open_now: int, opened: int) -> str:
    """How many of a client's relayed connections were still open, said in words."""
    if opened == 1:
        return "its one TCP connection was still open"
    return f"{'all ' if open_now == opened else ''}{open_now} of its {opened} TCP connections were still open"


async def _first_relayed_call(target: Target, sup: Supervisor, client: Any, relay: Relay, scenario: str) -> str:
    """One probe call through the relay before a scenario: why the scenario cannot say anything, or ""."""
    if client is _NOT_STARTED:
        return "grain_context(**fields) did not start a second time"
    with sup.stage(f"the probe before {scenario}", target.call_timeout, rule=None):
        try:
            await call_probe(target, client, 0)
        except (Exception, BaseExceptionGroup, SystemExit) as exc:
            return f"the probe raised {describe(exc)} once the kit relayed the client's connections"
    sup.check()
    if relay.connections == 0 or relay.bytes_from_client == 0:
        return (
            "the client's calls went through no TCP connection that the kit could relay (it made none in "
            "grain_context or in the call, or a C library made it)"
        )
    return ""


async def _slow_then_stalled(target: Target, obs: Observation, sup: Supervisor, plan: Plan, watch: LoopWatch) -> None:
    """Fresh clients through the relay: a call with its reply late (rule 7; then none of the client's
    connections may outlive it, rule 6), then a call on a stalled server (rule 13)."""
    async with _relayed_client(target, obs, sup, watch, "the client for the slow server") as (client, relay):
        obs.relayed_not_judged = await _first_relayed_call(target, sup, client, relay, "the slow server")
        if obs.relayed_not_judged:
            return
        errors: list[BaseException] = []
        if not _stalled_already(target, obs, watch):  # else late replies would only say it again, slower
            relay.delay_replies(REPLY_DELAY)
            phase = f"a probe call whose reply came {REPLY_DELAY * 1000:.0f} ms late"
            obs.call_phases.append(phase)
            with sup.stage(phase, target.call_timeout, rule=8):
                async with watch.watching(phase):
                    errors = await concurrent_probes(target, client, 1, CONCURRENT_ROUNDS + 1)
            sup.check()
            obs.slow_phase = phase
            obs.round_errors.append(errors)
    if errors:
        obs.stall_skipped = f"the call whose reply came late failed first ({describe(errors[0])})"
        return
    if not plan.stall:
        obs.stall_skipped = plan.why_no_stall
        return
    async with _relayed_client(target, obs, sup, watch, "the client for the stalled server") as (client, relay):
        obs.relayed_not_judged = await _first_relayed_call(target, sup, client, relay, "the stalled server")
        if obs.relayed_not_judged:
            return
        relay.stall()
        obs.stalled = await _call_on_a_stalled_server(target, sup, client)


def _stalled_already(target: Target, obs: Observation, watch: LoopWatch) -> bool:
    """Whether a round of calls on the live server has blocked the loop beyond the limit (rule 7 is broken)."""
    return any(s.phase in obs.call_phases and s.seconds >= target.stall_limit for s in watch.stalls)


async def _call_on_a_stalled_server(target: Target, sup: Supervisor, client: Any) -> StalledCall:
    """One call while the server takes the request and answers nothing: it must raise within the stated limit."""
    result = StalledCall()
    waited = target.call_limit + CALL_LIMIT_SLACK
    began = time.monotonic()
    with sup.stage("a call on a stalled server", waited, rule=13):
        with anyio.move_on_after(waited) as deadline:
            try:
                result.returned = await call_probe(target, client, 1, bounded=False)
                result.returned_normally = True
            except AssertionError as wrong:
                result.wrong = str(wrong) or "the probe rejected the answer"
            except (Exception, BaseExceptionGroup, SystemExit) as exc:
                result.raised = describe(exc)
        result.seconds = time.monotonic() - began
        if deadline.cancel_called:
            result.hung, result.returned_normally = True, False
    sup.check()
    return result


async def _start_client(
    target: Target,
    obs: Observation,
    sup: Supervisor,
    clients: TaskGroup,
    watch: LoopWatch,
    record: Record,
    phase: str | None,
) -> Any:
    """Enter grain_context(**fields) in a task of its own, as the head does; ``_NOT_STARTED`` if it did not."""
    assert obs.fields is not None
    fields = dict(obs.fields)
    module = target.module

    def factory() -> AbstractAsyncContextManager[Any]:
        return require_async_cm(module.grain_context(**fields), "grain_context(**fields)")

    obs.clients.append(record)
    limit = target.call_timeout
    client: Any = _NOT_STARTED
    with sup.stage("grain_context(**fields) to start", limit, rule=5, then=target.cleanup_limit):
        with anyio.move_on_after(limit) as deadline:
            try:
                async with watch.watching(phase) if phase else nullcontext():
                    client = await clients.start(daemon, record, factory, True)
            except anyio.get_cancelled_exc_class():
                raise
            except (Exception, BaseExceptionGroup, SystemExit) as exc:
                what = "grain_context(**fields) while starting"
                if shared := _shared_across_runs(target, exc, obs, what):
                    obs.shared_across_runs = obs.calls_skipped = shared
                else:
                    obs.context_error = _start_failure(exc, what, 5, obs)
    sup.check()
    if deadline.cancel_called and client is _NOT_STARTED:
        obs.context_error = context_timed_out(limit)
    return client


async def _calls(target: Target, obs: Observation, sup: Supervisor, plan: Plan, client: Any, watch: LoopWatch) -> None:
    """The probe alone, then V at once for a few rounds, every call watched for stalls (rules 7, 8)."""
    if not plan.calls:
        obs.calls_skipped = plan.why_fewer
        return
    obs.call_phases.append(FIRST_CALL_PHASE)
    with sup.stage(FIRST_CALL_PHASE, target.call_timeout, rule=7):
        async with watch.watching(FIRST_CALL_PHASE):
            try:
                await call_probe(target, client)
            except TimeoutError:
                obs.probe_error = f"the probe did not return within {target.call_timeout:g} s (--sworker-call-timeout)"
                obs.calls_hung = True
            except (Exception, BaseExceptionGroup, SystemExit) as exc:
                if shared := _shared_across_runs(target, exc, obs, "the probe call"):
                    obs.calls_skipped = shared
                else:
                    obs.probe_error = _probe_failure(exc, obs)
    sup.check()
    if obs.probe_error or obs.calls_skipped:
        return
    for number in range(1, CONCURRENT_ROUNDS + 1):
        phase = f"round {number} of {target.capacity} concurrent probe calls"
        obs.call_phases.append(phase)
        with sup.stage(phase, target.call_timeout, rule=8):
            async with watch.watching(phase):
                errors = await concurrent_probes(target, client, target.capacity, number)
        sup.check()
        obs.round_errors.append(errors)
        if any(isinstance(error, TimeoutError) for error in errors):
            obs.calls_hung = True
            return  # a wait judged once is not repeated


#: A frame of a call waiting to retry: what a refusal by rate (HTTP 429, Retry-After) leads to.
_RETRYING = re.compile(r"retry|backoff|back_off", re.I)


def waiting_place(timeout: BaseException) -> str:
    """Where a call cut off by the kit's limit was waiting, when that was a retry's wait (else "")."""
    cancelled = timeout.__context__
    traceback = cancelled.__traceback__ if cancelled is not None else None
    frames = []
    while traceback is not None:
        frames.append(traceback.tb_frame.f_code)
        traceback = traceback.tb_next
    retrying = [code for code in frames if _RETRYING.search(code.co_name)]
    if not retrying:
        return ""
    code = retrying[-1]
    return f"to retry, in {code.co_name} ({code.co_filename.rsplit('/', 1)[-1]})"


def _shared_across_runs(target: Target, exc: BaseException, obs: Observation, what: str) -> str:
    """Why the calls are not judged under asyncio when ``what`` failed in an object the trio run made and the
    module keeps at module level (e.g. one client per process): the kit's doing, not the module's (or "")."""
    if obs.loop == "trio" or not isinstance(classify(exc, what, obs.loop), Portability):
        return ""
    name = held_at_module_level(exc, target.own_modules())
    if not name:
        return ""
    return (
        f"not judged under {obs.loop}: {what} went through {name}, an object kept at module level and made "
        f"in the kit's trio run, and raised {describe(exc)}; Grain runs one event loop per process, so that is the "
        "kit running the module twice, not a portability problem (the calls were judged under trio)"
    )


def _probe_failure(exc: BaseException, obs: Observation) -> str:
    """Why the probe could not be used (one line); a call that breaks a rule itself (e.g. needs asyncio) says so."""
    found = classify(exc, "the probe call", obs.loop)
    if isinstance(found, Portability):
        obs.portability = found.observed
        return obs.portability
    if found is not None:
        obs.probe_violation = found  # judged on its own record (Rule 7), not as grain_context failing
        return f"the probe call broke Rule {found.rule.number}"
    return f"the probe raised {describe(exc)} on a live instance (under {obs.loop})"


async def concurrent_probes(target: Target, client: Any, count: int, round_number: int) -> list[BaseException]:
    """``count`` probe calls at once on one client; the errors (every call runs to its end)."""
    errors: list[BaseException] = []

    async def one(variant: int) -> None:
        try:
            await call_probe(target, client, variant)
        except (Exception, BaseExceptionGroup, SystemExit) as exc:
            if isinstance(exc, TimeoutError) and (place := waiting_place(exc)):
                exc.add_note(f"when the kit's limit ran out, the call was waiting {place}")
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, 1 + round_number * count + index)
    return errors


async def _dead_server(target: Target, obs: Observation, sup: Supervisor, watch: LoopWatch, ending: str) -> DeadEnding:
    """A fresh client whose connections go through the relay; end them with ``ending``; call once (rule 10)."""
    result = DeadEnding()
    async with _relayed_client(target, obs, sup, watch, f"the client for the {ending} scenario") as (client, relay):
        result.not_judged = await _first_relayed_call(target, sup, client, relay, f"the {ending} scenario")
        if result.not_judged:
            return result
        addresses = relay.cut(ending)
        result.connections = len(addresses)
        seen = await anyio.to_thread.run_sync(wait_for_endings, addresses)
        if "open" in seen.values():  # the ending did not reach the client: not the scenario meant
            result.not_judged = f"the client's connection did not show the {ending} the kit made within 1 s"
            return result
        with sup.stage(f"the first call after {ENDING_TEXT[ending]}", DEAD_CALL_LIMIT, rule=10):
            with anyio.move_on_after(DEAD_CALL_LIMIT) as deadline:
                try:
                    result.returned = await call_probe(target, client, 1)
                    result.returned_normally = True
                except AssertionError as wrong:
                    result.wrong = str(wrong) or "the probe rejected the answer"
                except (Exception, BaseExceptionGroup, SystemExit):
                    pass  # it raised: what Rule 10 asks
            if deadline.cancel_called:
                result.hung = True
                result.returned_normally = False
        sup.check()
    return result


def _leftover(obs: Observation, before: Footprint) -> None:
    """Rule 6: what the teardown left (child processes, listening sockets); the kit kills it, and reports the first."""
    left = Footprint.reap_since(before)
    obs.leftover_description = obs.leftover_description or left


async def _second_backendless_instance(target: Target, obs: Observation, sup: Supervisor) -> None:
    """A second backendless instance, after the first (one per head): are its fields the same (rule 11)?"""
    spent = obs.instance.started_in if obs.instance and obs.instance.started_in else 0.0
    teardown = obs.instance.teardown_seconds if obs.instance else None
    if teardown is None or teardown > target.cleanup_limit or time.monotonic() + 2 * spent + 2 > sup.budget_deadline:
        return  # no time left in the kit's budget: Rule 11 goes on the first instance's fields alone
    before = Footprint.now()
    record = Record("a second instance")
    obs.second = record
    scratch = Observation(obs.loop)
    async with _TornDown(sup, "the second instance's teardown", target.cleanup_limit) as workers:
        await _start(target, scratch, sup, workers, [record])
    sup.check()
    obs.second_error = scratch.start_error
    _leftover(obs, before)


# -- checks of what was yielded -----------------------------------------------------------------


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
