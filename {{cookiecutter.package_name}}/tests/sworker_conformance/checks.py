"""The checks, one per contract rule (numbered as in the README).

Rules 1, 2 and 12 are read off the module and the config. The others judge an
``Observation`` (one Grain-like run per event loop, see observation.py). Each
check ends in one of three ways: it returns (the rule holds), it raises
``ContractViolation`` ("Rule N (...) is broken: ... Fix: ..."), or it raises
``CouldNotJudge`` ("the kit could not judge Rule N: <one line>"), e.g. because
another rule failed first or the module made nothing to observe.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, NoReturn

from .instance import Record, describe, require_no_arguments, walk_errors
from .observation import (
    DEAD_CALL_LIMIT,
    ENDING_TEXT,
    FIRST_CALL_PHASE,
    REPLY_DELAY,
    START_PHASE,
    Observation,
)
from .rules import ContractViolation, CouldNotJudge, Portability
from .target import CALL_LIMIT_SLACK, Target, read_worker_config
from .watch import Stall

CONFIG_KEYS = frozenset({"BACKENDLESS"})
SWORKER_RESOURCES = frozenset({"Capacity", "Memory", "WTime"})
CREDENTIAL_NAME = re.compile(r"token|passw|secret|api[_-]?key|access[_-]?key|credential|private[_-]?key|auth", re.I)
KNOWN_TOKEN = re.compile(
    r"(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|\bsk-[A-Za-z0-9_-]{16,}|xox[abposr]-[\w-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b|\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}|-----BEGIN [A-Z ]*PRIVATE KEY-----)"
)
MIN_SECRET_LENGTH = 8
NO_PROBE = (
    "it needs a probe: an async function probe(client) that makes one representative call; name it with "
    "--sworker-probe module:function (or sworker_probe in the pytest config)"
)
#: The rules judged on the probe's calls: left unjudged without a probe.
CALL_RULES = (7, 8, 10, 13)
#: A refusal by rate: the service's own limit on calls in flight, not a client shared unsafely.
RATE_REFUSAL = re.compile(r"\b429\b|too many requests|rate.?limit|retry.?after|waiting to retry", re.I)
RATE_FIX = (
    "the service refuses calls above its own limit (a rate or concurrency limit: HTTP 429). Set [worker.res] "
    "Capacity V to at most what it allows at once (--sworker-capacity for the kit), and retry a refusal inside "
    "the call only a few times, each wait capped well below the call limit (a Retry-After of 30 s holds the "
    "tasklet's Capacity slot for 30 s); a lock does not help: the refusal is the service's."
)
#: A stall this long in every watched call, at the same place, is a blocking call per request.
STEADY_STALL = 0.02


def _violation(rule: int, observed: str, fix: str | None = None) -> NoReturn:
    raise ContractViolation(rule, observed, fix)


def _first_failed(rule: int, *errors: AssertionError | None) -> None:
    """Raise the first of ``errors`` if it broke ``rule``; if it broke another rule, say the kit could not judge.

    Each is a ContractViolation, or Portability (which ``_run_happened`` has raised already).
    """
    for error in errors:
        if error is None:
            continue
        if not isinstance(error, ContractViolation) or error.rule.number == rule:
            raise error
        raise CouldNotJudge(rule, f"Rule {error.rule.number} failed first ({error.observed[:160]})")


def _run_happened(obs: Observation, rule: int) -> None:
    """The run itself: it ran, the kit did not fail, and (under asyncio) the module is not trio-only."""
    if obs.kit_error:
        raise CouldNotJudge(rule, f"the kit failed: {obs.kit_error}", blocking=True)
    if obs.not_run:
        raise CouldNotJudge(rule, obs.not_run)
    if obs.portability:
        raise Portability(obs.portability)


def _probe_calls_made(target: Target, obs: Observation, rule: int) -> None:
    """The probe calls ran on a live instance: there is a probe, they were not left out, the first one worked."""
    if target.probe is None:
        raise CouldNotJudge(rule, NO_PROBE)
    if obs.calls_skipped:
        raise CouldNotJudge(rule, obs.calls_skipped)
    if obs.probe_error:
        raise CouldNotJudge(rule, f"{obs.probe_error}; fix the module or the probe first", blocking=True)


def _stopped_before(obs: Observation, rule: int, what: str) -> NoReturn:
    stage = obs.abandoned
    if stage is None:
        raise CouldNotJudge(rule, f"the run ended before {what}")
    raise CouldNotJudge(
        rule,
        f"the kit stopped waiting for {stage.label} (after {stage.limit:g} s) before {what}; it does not repeat "
        "a wait it has judged",
    )


def _killed(obs: Observation) -> str:
    return f"; the kit killed {obs.killed} and moved on" if obs.killed else "; the kit moved on"


# Rule 1 ---------------------------------------------------------------------------------------


def check_config(target: Target) -> None:
    """GRAIN_SWORKER_CONFIG exists, is a dict, has only known keys, and BACKENDLESS is a bool."""
    module = target.module
    if not hasattr(module, "GRAIN_SWORKER_CONFIG"):
        _violation(1, f"{target.module_name} has no GRAIN_SWORKER_CONFIG; Grain's head fails with AttributeError.")
    config = module.GRAIN_SWORKER_CONFIG
    if not isinstance(config, dict):
        _violation(1, f"GRAIN_SWORKER_CONFIG is a {type(config).__name__}, not a dict; Grain calls .get() on it.")
    unknown = sorted(map(str, set(config) - CONFIG_KEYS))
    if unknown:
        _violation(
            1,
            f"GRAIN_SWORKER_CONFIG has unknown keys {unknown}; Grain 0.17 reads only BACKENDLESS, so a "
            "misspelt key is silently ignored.",
        )
    if "BACKENDLESS" in config and not isinstance(config["BACKENDLESS"], bool):
        value = config["BACKENDLESS"]
        _violation(
            1,
            f"BACKENDLESS is {value!r} (a {type(value).__name__}); Grain reads it for truth, so {value!r} "
            f"means {'backendless' if value else 'server'}, whatever it says.",
            "write BACKENDLESS=True or BACKENDLESS=False (a real bool), or leave it out for a server sworker.",
        )


# Rule 2 ---------------------------------------------------------------------------------------


def check_signatures(target: Target) -> None:
    """Both entry points exist; grain_run_sworker() needs no arguments; neither is a bare async def."""
    module = target.module
    for name in ("grain_run_sworker", "grain_context"):
        function = getattr(module, name, None)
        if not callable(function):
            _violation(2, f"{target.module_name} has no callable {name}; Grain calls it.")
        if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
            kind = "an undecorated async generator" if inspect.isasyncgenfunction(function) else "a coroutine function"
            _violation(
                2, f"{name} is {kind}, not an async context manager; Grain enters {name}(...) with 'async with'."
            )
    require_no_arguments(module)


def check_entry_points_enter(obs: Observation) -> None:
    """Rule 2 at run time: what the calls returned could be entered with ``async with``."""
    _run_happened(obs, 2)
    for error in (obs.start_error, obs.context_error):
        if isinstance(error, ContractViolation) and error.rule.number == 2:
            raise error


# Rule 3 ---------------------------------------------------------------------------------------


def check_yielded_name(target: Target, obs: Observation) -> None:
    """The yielded dict's name is usable, and two live server instances have different names."""
    _run_happened(obs, 3)
    _first_failed(3, obs.yield_error, obs.start_error)
    if obs.abandoned is not None and obs.abandoned.rule == 9:
        _stopped_before(obs, 3, "anything was yielded")
    first, second = obs.instance, obs.second
    if target.is_backendless or first is None or not first.started:
        return  # one instance per head: Gnaw merges identical backendless names
    if second is None or not second.started:
        reason = f"the second instance did not start ({obs.second_error})" if obs.second_error else ""
        raise CouldNotJudge(3, f"name uniqueness needs two live instances; {reason or 'there was only one'}")
    if first.name == second.name:
        try:
            check_config(target)
        except ContractViolation as violation:
            raise CouldNotJudge(
                3, f"Rule 1 failed first, so the variant is unclear ({violation.observed[:160]})"
            ) from None
        _violation(
            3,
            f"two live instances both yielded the name {first.name!r}; under Gnaw the second worker is rejected "
            "and re-runs grain_run_sworker in a tight loop, with no error anywhere.",
        )


# Rule 4 ---------------------------------------------------------------------------------------


def check_fields_survive_msgpack(obs: Observation) -> None:
    _run_happened(obs, 4)
    _first_failed(4, obs.fields_error, obs.start_error, obs.yield_error)
    if obs.fields is None:
        _stopped_before(obs, 4, "the fields were seen")


# Rule 5 ---------------------------------------------------------------------------------------


def check_context_accepts_fields(obs: Observation) -> None:
    _run_happened(obs, 5)
    if obs.shared_across_runs:
        raise CouldNotJudge(5, obs.shared_across_runs)
    _first_failed(5, obs.context_error, obs.start_error, obs.yield_error, obs.fields_error)
    if obs.abandoned is not None and obs.abandoned.rule == 5:
        _violation(
            5,
            f"grain_context(**fields) neither yielded nor raised within {obs.abandoned.limit:g} s, and did not "
            f"give way to cancellation either{_killed(obs)}; the head would hang.",
        )
    if not obs.clients or not obs.clients[0].started:
        _stopped_before(obs, 5, "grain_context(**fields) started")


# Rule 6 ---------------------------------------------------------------------------------------


def check_cleanup(target: Target, obs: Observation) -> None:
    """Teardown by cancellation leaves no process or listening socket, within the limit."""
    _run_happened(obs, 6)
    limit = target.cleanup_limit
    if obs.leftover_description:
        _violation(
            6,
            f"after Grain-style teardown (cancellation), {obs.leftover_description} was still there (the kit has "
            "killed it); on a cluster that is an orphan on the worker node. Code after a bare yield never runs.",
        )
    stage = obs.abandoned
    if stage is not None and (stage.rule == 6 or (stage.rule == 9 and obs.blocked is None)):
        what = stage.label if stage.rule == 6 else "grain_run_sworker()'s cleanup, once its start-up was cancelled,"
        _violation(
            6,
            f"{what} had not finished {limit:g} s after the kit cancelled it (--sworker-cleanup-limit)"
            f"{_killed(obs)}. Grain puts no limit on it: the head or the worker waits that long to exit, or forever.",
        )
    for record in _records(obs):
        seconds = record.teardown_seconds
        if seconds is not None and seconds > limit:
            _violation(
                6,
                f"the teardown of {record.label} took {seconds:.1f} s (limit {limit:g} s, --sworker-cleanup-limit); "
                "Grain puts no limit on it, so the head or the worker waits that long to exit.",
            )
    if obs.outliving:
        _violation(
            6,
            f"{obs.outliving}: its connections outlive it. Grain makes a client per instance and head; each one "
            "left open holds a socket (and the server's side of it) until the process exits.",
            "close the client in grain_context's finally: (e.g. 'await client.aclose()' under a shielded, "
            "time-limited scope); do not count on __del__, which for many async SDKs (AsyncOpenAI, redis.asyncio) "
            "cleans up only under asyncio.",
        )
    if obs.left_after_failed_start:
        _violation(
            6,
            f"grain_run_sworker() failed to start (under {obs.loop}) and left {obs.left_after_failed_start} running "
            "(the kit has killed it); on a cluster that is an orphan on the worker node.",
            "start the server inside try:/finally: (or an async with) at once, so that the cleanup runs when "
            "anything after the start fails; terminate, kill and reap it there.",
        )
    if obs.garbage and _needs_asyncio(obs) is None:
        _violation(
            6,
            f"the module's objects were left to the garbage collector unclosed (under {obs.loop}): "
            f"{'; '.join(obs.garbage[:3])}.",
            "close what grain_context and the calls open (clients, sockets, files) in a finally: block, and await "
            "every coroutine you create; a close that runs only in __del__ does not run under trio.",
        )
    if stage is not None:
        _stopped_before(obs, 6, "the teardown")


def _needs_asyncio(obs: Observation) -> ContractViolation | None:
    """The run's Rule 7 violation for asyncio-only code, if any (what its objects leave behind follows from it)."""
    for error in (obs.start_error, obs.context_error, obs.probe_violation):
        if isinstance(error, ContractViolation) and error.rule.number == 7:
            return error
    return None


def _records(obs: Observation) -> list[Record]:
    return [record for record in (obs.instance, obs.second, *obs.clients) if record is not None]


# Rule 7 ---------------------------------------------------------------------------------------


def check_event_loop_friendly(target: Target, obs: Observation) -> None:
    """Runs under trio (asyncio-only code fails there) and never blocks the event loop while it works."""
    _run_happened(obs, 7)
    asyncio_only = _needs_asyncio(obs)
    if asyncio_only is not None and obs.garbage:  # what it left behind is this rule's, not the kit's nor Rule 6's
        _violation(
            7,
            f"{asyncio_only.observed} What it had made was then left to the garbage collector: "
            f"{'; '.join(obs.garbage[:2])}.",
            asyncio_only.fix,
        )
    _first_failed(7, obs.start_error, obs.context_error, obs.probe_violation)
    stage, stall = obs.abandoned, obs.blocked
    if stage is not None and stall is not None and stage.rule in (5, 7, 8, 10, 13):
        _violation(
            7,
            f"the event loop was blocked for more than {stall.seconds:.1f} s during {stall.phase or stage.label}, "
            f"{stall.location()}, and never came back{_killed(obs)}.",
            _stall_fix(stall),
        )
    starting = [s for s in obs.stalls if s.phase == START_PHASE and s.seconds >= target.start_stall_limit]
    if starting:
        worst = max(starting, key=lambda s: s.seconds)
        _violation(
            7,
            f"the event loop was blocked for {worst.seconds * 1000:.0f} ms {START_PHASE}, {worst.location()} "
            f"(limit {target.start_stall_limit * 1000:.0f} ms once, while the client starts); every tasklet on "
            "the head stalls meanwhile.",
            _stall_fix(worst),
        )
    _probe_calls_made(target, obs, 7)
    if not obs.call_phases:
        _stopped_before(obs, 7, "the probe calls")
    calls = [s for s in obs.stalls if s.phase in obs.call_phases]
    over = [s for s in calls if s.seconds >= target.stall_limit]
    if over:
        worst = max(over, key=lambda s: s.seconds)
        more = f" ({len(over)} stalls over the limit in {len(obs.call_phases)} watched phases)" if len(over) > 1 else ""
        slow = (
            f" With the reply {REPLY_DELAY * 1000:.0f} ms late (the kit's slow server), a call made on the event loop "
            "blocks it for as long as the server takes: on a cluster, a busy server or a slow network does that."
            if worst.phase == obs.slow_phase
            else ""
        )
        _violation(
            7,
            f"the event loop was blocked for {worst.seconds * 1000:.0f} ms during {worst.phase}, {worst.location()}"
            f"{more}; the limit is {target.stall_limit * 1000:.0f} ms: a blocked loop stalls every tasklet on "
            f"the head.{slow}",
            _stall_fix(worst),
        )
    steady = _steady_block(obs, calls)
    if steady is not None:
        low, high, sample, rounds = steady
        _violation(
            7,
            f"in every round of {target.capacity} concurrent probe calls ({rounds} rounds), the event loop was "
            f"blocked {sample.location()}, {low * 1000:.0f} to {high * 1000:.0f} ms each time: a blocking call per "
            "request, which stalls every tasklet on the head.",
            _stall_fix(sample),
        )


def _steady_block(obs: Observation, calls: list[Stall]) -> tuple[float, float, Stall, int] | None:
    """The same blocking place in every round of calls: (shortest, longest, one stall there, rounds), or None.

    The first call alone is left out: it may block less than a round of V calls (or pay once for
    something, e.g. an import) without changing what a round shows; so is the slow server's call.
    """
    rounds = [phase for phase in obs.call_phases if phase not in (FIRST_CALL_PHASE, obs.slow_phase)]
    if len(rounds) < 2:
        return None
    keyed = [s for s in calls if s.key is not None and s.seconds >= STEADY_STALL and s.phase in rounds]
    common = None
    for phase in rounds:
        keys = {s.key for s in keyed if s.phase == phase}
        common = keys if common is None else common & keys
    if not common:
        return None
    key = Counter(s.key for s in keyed if s.key in common).most_common(1)[0][0]
    there = [s for s in keyed if s.key == key]
    return min(s.seconds for s in there), max(s.seconds for s in there), there[0], len(rounds)


def _stall_fix(stall: Stall) -> str:
    """The fix for the place that blocked the loop."""
    frames = [frame for frame in (stall.where, stall.caller) if frame is not None]
    text = " ".join(frame.describe() for frame in frames)
    if any(frame.module == "ssl" or frame.filename.endswith("/ssl.py") for frame in frames) or re.search(
        r"Client\(|Session\(|create_default_context|SSLContext", text
    ):
        return (
            "build the client (and its SSL context) once, in grain_context, and share it across calls: a new "
            "HTTP client or SSL context loads the system's CA certificates, a blocking read, every time it is "
            "built."
        )
    if "time.sleep" in text:
        return "use 'await anyio.sleep(...)', never time.sleep(...), in async code."
    return (
        "make that call async, or move it off the loop with 'await anyio.to_thread.run_sync(...)'; what is done "
        "once (a token, a client, a config file) belongs in grain_context, not in every call."
    )


# Rule 8 ---------------------------------------------------------------------------------------


def check_concurrent_clients(target: Target, obs: Observation) -> None:
    """One shared client serves V concurrent probe calls, round after round."""
    _run_happened(obs, 8)
    _first_failed(8, obs.start_error, obs.context_error, obs.probe_violation)
    _probe_calls_made(target, obs, 8)
    for number, errors in enumerate(obs.round_errors, start=1):
        if errors:
            late = bool(obs.slow_phase) and number == len(obs.round_errors)
            calls = 1 if late else target.capacity
            hung = sum(isinstance(error, TimeoutError) for error in errors)
            seen = (
                f"{hung} of {calls} concurrent probe calls did not return within {target.call_timeout:g} s"
                if hung
                else f"{len(errors)} of {calls} concurrent probe calls on the one shared client failed"
            )
            which = f"the call whose reply came {REPLY_DELAY * 1000:.0f} ms late" if late else f"round {number}"
            rate = rate_refusal(errors)
            _violation(
                8,
                f"{seen} ({which}): {rate or describe(errors[0])}; under Grain each failure costs the instance "
                "health, and after 3 the head drops it and hangs.",
                RATE_FIX if rate else None,
            )
    stage = obs.abandoned
    if stage is not None and stage.rule == 8:
        _violation(
            8,
            f"a round of {target.capacity} concurrent probe calls did not finish and ignored cancellation "
            f"{_killed(obs)}.",
        )
    if len(obs.round_errors) == 0:
        _stopped_before(obs, 8, "the concurrent calls")


def rate_refusal(errors: list[BaseException]) -> str:
    """What shows a refusal by rate (HTTP 429, a retry wait) in ``errors``, or ""."""
    for error in errors:
        for inner in walk_errors(error):
            for text in (f"{type(inner).__name__}: {inner}", *getattr(inner, "__notes__", ())):
                if RATE_REFUSAL.search(text):
                    return " ".join(text.split())[:300]
    return ""


# Rule 9 ---------------------------------------------------------------------------------------


def check_startup_bounded(target: Target, obs: Observation) -> None:
    """grain_run_sworker yielded within the kit's limit, or raised a clear error."""
    _run_happened(obs, 9)
    stage = obs.abandoned
    if stage is not None and stage.rule == 9:
        stall = obs.blocked
        blocked = f"; the event loop was blocked {stall.location()}" if stall is not None else ""
        _violation(
            9,
            f"grain_run_sworker() neither yielded nor raised within {target.startup_timeout:g} s, the kit's "
            f"start-up limit (--sworker-startup-timeout), nor gave way when cancelled{blocked}{_killed(obs)}; under "
            "Grain the worker, then the head, would wait with no error anywhere.",
        )
    _first_failed(9, obs.start_error)
    if obs.instance is None or not obs.instance.started:
        _stopped_before(obs, 9, "grain_run_sworker() yielded")


# Rule 10 --------------------------------------------------------------------------------------


def check_dead_server_raises(target: Target, obs: Observation) -> None:
    """After the server stops (EOF, then a reset), the next call raises, and does not hang."""
    _run_happened(obs, 10)
    _first_failed(10, obs.start_error, obs.yield_error, obs.fields_error, obs.context_error, obs.probe_violation)
    _probe_calls_made(target, obs, 10)
    if obs.relay_error:
        raise CouldNotJudge(10, f"the kit's relay failed: {obs.relay_error}", blocking=True)
    stage = obs.abandoned
    if stage is not None and stage.rule == 10:
        _violation(
            10,
            f"{stage.label}, the call neither returned nor raised, and ignored cancellation{_killed(obs)}; "
            "nothing in Grain checks sworker liveness, so the head would wait forever.",
        )
    if obs.dead_skipped:
        raise CouldNotJudge(10, obs.dead_skipped)
    skipped = []
    for ending, result in obs.dead.items():
        if result.not_judged:
            skipped.append(f"{ending}: {result.not_judged}")
            continue
        happened = f"after the kit ended the client's connection{'s' if result.connections > 1 else ''} as a dead "
        happened += f"server does ({ENDING_TEXT[ending]})"
        fix = None
        if ending == "reset":
            fix = (
                "let a reset or lost connection (ConnectionResetError, anyio.BrokenResourceError, httpx.ReadError) "
                "propagate as an exception: never catch it to return a default or an empty answer."
            )
        if result.hung:
            _violation(
                10,
                f"{happened}, the next call hung for {DEAD_CALL_LIMIT:g} s instead of raising; nothing in Grain "
                "checks sworker liveness, so the head would wait forever.",
                fix,
            )
        if result.wrong:
            _violation(
                10,
                f"{happened}, the next call returned instead of raising, and the probe found the answer wrong "
                f"({result.wrong[:160]}); on Grain that answer is the tasklet's result: a dead server answered as "
                "a success.",
                fix,
            )
        if result.returned_normally:
            _violation(
                10,
                f"{happened}, the next call returned {result.returned!r:.80} instead of raising; on Grain that is "
                "the tasklet's result: a dead server answered as a success.",
                fix,
            )
    if stage is not None and not obs.dead:
        _stopped_before(obs, 10, "the dead-server scenarios")
    if skipped and len(skipped) == len(obs.dead):
        raise CouldNotJudge(10, "; ".join(skipped))


# Rule 13 --------------------------------------------------------------------------------------


def check_calls_bounded(target: Target, obs: Observation) -> None:
    """A call on a stalled server (connection open, no reply) raises within the stated call limit."""
    _run_happened(obs, 13)
    _first_failed(13, obs.start_error, obs.context_error, obs.probe_violation)
    _probe_calls_made(target, obs, 13)
    if obs.relay_error:
        raise CouldNotJudge(13, f"the kit's relay failed: {obs.relay_error}", blocking=True)
    limit = target.call_limit
    stated = f"{limit:g} s, the call limit stated to the kit (--sworker-call-limit)"
    stage = obs.abandoned
    if stage is not None and stage.rule == 13:
        _violation(
            13,
            f"on a stalled server (connection open, no byte back) the call neither returned nor raised within "
            f"{stated}, and ignored cancellation{_killed(obs)}; Grain has no limit of its own, so every tasklet on "
            "the instance would wait forever.",
        )
    if obs.dead_skipped and obs.calls_hung:
        raise CouldNotJudge(13, obs.dead_skipped)
    if obs.relayed_not_judged:
        raise CouldNotJudge(13, obs.relayed_not_judged)
    result = obs.stalled
    if result is None:
        if obs.stall_skipped:
            raise CouldNotJudge(13, obs.stall_skipped)
        _stopped_before(obs, 13, "the call on a stalled server")
    if result.hung:
        _violation(
            13,
            f"on a stalled server (the kit's relay kept the connection open and sent nothing back, as a hung job, "
            f"a SIGSTOPped server or a full disk do), the call neither returned nor raised within {stated}, plus "
            f"the kit's {CALL_LIMIT_SLACK:g} s of slack; Grain has no limit of its own, so every tasklet on "
            "the instance would wait forever.",
        )
    if result.wrong or result.returned_normally:
        answer = f"the probe found it wrong ({result.wrong[:160]})" if result.wrong else f"{result.returned!r:.80}"
        _violation(
            13,
            f"on a stalled server (no byte back), the call returned instead of raising: {answer}; on Grain that "
            "is the tasklet's result, an answer the server never gave.",
        )


# Rule 11 --------------------------------------------------------------------------------------


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, bytes):
        yield path, value.decode(errors="replace")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}[{key!r}]", str(key)
            yield from _strings(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _credential_fields(fields: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in fields.items():
        path = f"{prefix}{key}"
        if CREDENTIAL_NAME.search(str(key)):
            yield path, value
        if isinstance(value, dict):
            yield from _credential_fields(value, f"{path}.")


def find_long_lived_credential(first: dict[str, Any], second: dict[str, Any] | None) -> str | None:
    """Why the fields carry a long-lived credential, or None. ``second``: another instance's fields."""
    secrets_in_env = {
        name: value
        for name, value in os.environ.items()
        if CREDENTIAL_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH
    }
    for path, text in _strings(first, "fields"):
        for name, value in secrets_in_env.items():
            if value in text:
                return f"{path} carries the value of the environment variable {name}"
        if KNOWN_TOKEN.search(text):
            return f"{path} holds what looks like an API token or a private key"
    if second is not None:
        other = dict(_credential_fields(second))
        for key, value in _credential_fields(first):
            if value not in (None, "", b"", 0) and other.get(key) == value:
                return (
                    f"the field {key!r} is named like a credential and has the same value in two instances, so "
                    "it is long-lived (an ephemeral secret made fresh for each instance, like secrets.token_hex(), "
                    "is fine)"
                )
    return None


def check_no_credentials(obs: Observation) -> None:
    """No long-lived credential in the fields; an ephemeral per-instance secret passes."""
    _run_happened(obs, 11)
    _first_failed(11, obs.start_error, obs.yield_error)
    if obs.instance is None or not obs.instance.started:
        _stopped_before(obs, 11, "anything was yielded")
    second = obs.second.fields if obs.second is not None and obs.second.started else None
    reason = find_long_lived_credential(obs.instance.fields, second)
    if reason:
        _violation(
            11,
            f"{reason}; the fields travel through Gnaw, which keeps them after the head exits and hands them to "
            "the next head that attaches.",
        )


# Rule 12 --------------------------------------------------------------------------------------


def check_config_snippet(target: Target) -> None:
    """The [worker] section names the module by dotted name and asks only sworker resources."""
    config = read_worker_config(target.config_path) if target.config_path else None
    if config is None:
        raise CouldNotJudge(
            12, "there is no Grain config with a [worker] specialized_type; name one with --sworker-config"
        )
    stype = config.specialized_type
    if stype != target.module_name and not stype.endswith(".py"):
        raise CouldNotJudge(12, f"{config.path} configures {stype!r}, not {target.module_name!r}")
    if stype.endswith(".py") or "/" in stype:
        _violation(
            12,
            f"specialized_type = {stype!r} is a file path; Grain re-executes such a file on every load, so module "
            "state is not shared between grain_run_sworker and grain_context.",
        )
    try:
        importlib.import_module(stype)
    except Exception as exc:
        _violation(
            12,
            f"specialized_type = {stype!r} does not import by that dotted name ({describe(exc)}); the head and "
            "every worker import it so.",
        )
    bad = sorted(set(config.res) - SWORKER_RESOURCES)
    if bad:
        _violation(
            12,
            f"[worker.res] in {config.path.name} asks for {bad}; Grain sends tasklets with Cores/Node to "
            "ordinary workers, a Cores tasklet on an sworker crashes the head, and Token has no msgpack encoding.",
        )
    memory, cores = config.script.get("memory", 0), config.script.get("cores", 0)
    if memory and not cores:
        _violation(
            12,
            f"[worker.script] in {config.path.name} sets memory = {memory} without cores; Gnaw panics on the "
            "resulting Node(N=0).",
        )
    capacity = config.res.get("Capacity")
    if capacity is not None and not (
        isinstance(capacity, dict) and isinstance(capacity.get("V"), int) and capacity["V"] > 0
    ):
        _violation(12, f"[worker.res] Capacity = {capacity!r} is not a table with a positive integer V.")
    try:
        from grain.config import load_conf

        load_conf(str(config.path))
    except (Exception, SystemExit) as exc:
        _violation(12, f"Grain's own loader rejects {config.path.name}: {describe(exc)}.")
