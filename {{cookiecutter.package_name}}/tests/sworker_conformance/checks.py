"""The checks, one per contract rule (numbered as in the README), each raising ContractViolation.

Rules 1, 2 and 12 are read off the module and the config. The others judge an
``Observation`` (one Grain-like run per event loop, see observation.py): a
stage that failed is reported by the rule it broke, and the checks that
needed it are skipped, naming that rule.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from .instance import ProbeFailed, describe
from .observation import DeadServerObservation, Observation
from .rules import ContractViolation
from .target import Target, read_worker_config

CONFIG_KEYS = frozenset({"BACKENDLESS"})
SWORKER_RESOURCES = frozenset({"Capacity", "Memory", "WTime"})
CREDENTIAL_NAME = re.compile(r"token|passw|secret|api[_-]?key|access[_-]?key|credential|private[_-]?key|auth", re.I)
KNOWN_TOKEN = re.compile(
    r"(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|\bsk-[A-Za-z0-9_-]{16,}|xox[abposr]-[\w-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b|\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}|-----BEGIN [A-Z ]*PRIVATE KEY-----)"
)
MIN_SECRET_LENGTH = 8
NO_PROBE = (
    "needs a probe: an async function probe(client) that makes one representative call; name it with "
    "--sworker-probe module:function (or sworker_probe in the pytest config)"
)


def _stage_errors(observation: Observation) -> list[AssertionError]:
    stages = (
        observation.start_error,
        observation.yield_error,
        observation.second_error,
        observation.fields_error,
        observation.context_error,
        observation.probe_error,
    )
    return [error for error in stages if error is not None]


def _raise_own(observation: Observation, rule: int, *, unclaimed: bool = False) -> None:
    """Raise a stage error that broke ``rule`` (with ``unclaimed``, also errors of no judged rule)."""
    for error in _stage_errors(observation):
        number = error.rule.number if isinstance(error, ContractViolation) else None
        if number == rule or (unclaimed and number is None and not isinstance(error, ProbeFailed)):
            raise error


def _blocked(error: AssertionError | None) -> None:
    if error is None:
        return
    if isinstance(error, ContractViolation):
        pytest.skip(f"not checked: rule {error.rule.number} failed first ({error.observed[:160]})")
    raise error  # a probe that fails on a healthy instance: the check cannot say anything


def _violation(rule: int, observed: str, fix: str | None = None) -> NoReturn:
    raise ContractViolation(rule, observed, fix)


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
    required = [
        parameter.name
        for parameter in inspect.signature(module.grain_run_sworker).parameters.values()
        if parameter.default is parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
    if required:
        _violation(2, f"grain_run_sworker requires {required}; Grain calls grain_run_sworker() with no arguments.")


def check_entry_points_enter(observation: Observation) -> None:
    """Rule 2 at run time: what the calls returned could be entered with ``async with``."""
    _raise_own(observation, 2)


# Rule 3 ---------------------------------------------------------------------------------------


def check_yielded_name(target: Target, observation: Observation) -> None:
    """The yielded dict's name is usable, and two live server instances have different names."""
    _raise_own(observation, 3)
    _blocked(observation.start_error)
    first, second = observation.instance, observation.second
    if first is not None and second is not None and first.name == second.name and not target.is_backendless:
        try:
            check_config(target)
        except ContractViolation as violation:
            pytest.skip(
                "name uniqueness not checked: rule 1 failed first, so the variant is unclear "
                f"({violation.observed[:160]})"
            )
    if target.is_backendless or first is None or second is None:
        return  # one instance per head: Gnaw merges identical backendless names
    if first.name == second.name:
        _violation(
            3,
            f"two live instances both yielded the name {first.name!r}; under Gnaw the second worker is rejected "
            "and re-runs grain_run_sworker in a tight loop, with no error anywhere.",
        )


# Rule 4 ---------------------------------------------------------------------------------------


def check_fields_survive_msgpack(observation: Observation) -> None:
    _raise_own(observation, 4)
    _blocked(observation.start_error or observation.yield_error)


# Rule 5 ---------------------------------------------------------------------------------------


def check_context_accepts_fields(observation: Observation) -> None:
    _raise_own(observation, 5, unclaimed=True)
    _blocked(observation.start_error or observation.yield_error or observation.fields_error)


# Rule 6 ---------------------------------------------------------------------------------------


def check_cleanup(target: Target, observation: Observation) -> None:
    """Teardown by cancellation leaves no process or listening socket, within the limit."""
    _raise_own(observation, 6)
    for instance in (observation.instance, observation.second):
        if instance is None:
            continue
        if instance.leftover:
            _violation(
                6,
                f"after Grain-style teardown (cancellation), {instance.leftover_description} was still there (the "
                "kit has killed it); on a cluster that is an orphan on the worker node. Code after a bare yield "
                "never runs.",
            )
        seconds = instance.teardown_seconds or 0.0
        if seconds > target.cleanup_limit:
            _violation(
                6,
                f"teardown took {seconds:.1f} s (limit {target.cleanup_limit:g} s); Grain puts no limit on it, so "
                "the head or the worker waits that long to exit.",
            )
    _blocked(observation.start_error)


# Rule 7 ---------------------------------------------------------------------------------------


def check_event_loop_friendly(target: Target, observation: Observation) -> None:
    """Runs under trio (asyncio-only code fails there) and calls never stall the loop past the limit."""
    _raise_own(observation, 7)
    if target.probe is None:
        pytest.skip(NO_PROBE)
    for error in _stage_errors(observation):
        _blocked(error)
    stalls = observation.round_stalls
    if stalls and min(stalls) > target.stall_limit:
        _violation(
            7,
            f"the event loop stalled for {min(stalls) * 1000:.0f} to {max(stalls) * 1000:.0f} ms in each of "
            f"{len(stalls)} rounds of {target.capacity} probe calls (limit {target.stall_limit * 1000:.0f} ms); "
            "a blocking call stalls every tasklet on the head.",
        )


# Rule 8 ---------------------------------------------------------------------------------------


def check_concurrent_clients(target: Target, observation: Observation) -> None:
    """One shared client serves V concurrent probe calls, round after round."""
    _raise_own(observation, 8)
    if target.probe is None:
        pytest.skip(NO_PROBE)
    for error in _stage_errors(observation):
        _blocked(error)
    for round_number, errors in enumerate(observation.round_errors, start=1):
        if errors:
            _violation(
                8,
                f"{len(errors)} of {target.capacity} concurrent probe calls on the one shared client failed "
                f"(round {round_number}): {describe(errors[0])}; under Grain each failure costs the instance health, "
                "and after 3 the head drops it and hangs.",
            )


# Rule 9 ---------------------------------------------------------------------------------------


def check_startup_bounded(observation: Observation) -> None:
    """grain_run_sworker yielded within the kit's limit, or raised a clear error."""
    _raise_own(observation, 9)
    error = observation.start_error
    if error is not None and (not isinstance(error, ContractViolation) or error.rule.number not in (2, 7)):
        raise error


# Rule 10 --------------------------------------------------------------------------------------


def check_dead_server_raises(target: Target, observation: DeadServerObservation) -> None:
    """After the server stops, the next call raises (and does not hang)."""
    if target.probe is None:
        pytest.skip(NO_PROBE)
    _blocked(observation.blocked_by)
    if observation.cannot_stop:
        pytest.skip(
            "the module started no process and no --sworker-environment runs its service, so the kit cannot stop "
            "the server; name a context manager that runs it with --sworker-environment module:function"
        )
    if observation.hung:
        _violation(
            10,
            f"after stopping {observation.stopped}, the next call hung instead of raising; nothing in Grain "
            "checks sworker liveness, so the head would wait forever.",
        )
    if observation.wrong:
        _violation(
            10,
            f"after stopping {observation.stopped}, the next call returned instead of raising, and the probe "
            f"found the answer wrong ({observation.wrong[:160]}); a dead server answered as a success gives users "
            "wrong results.",
        )
    if observation.raised is None:
        _violation(
            10,
            f"after stopping {observation.stopped}, the next call returned {observation.returned!r:.80} instead "
            "of raising; a dead server answered as a success gives users wrong results.",
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


def check_no_credentials(observation: Observation) -> None:
    """No long-lived credential in the fields; an ephemeral per-instance secret passes."""
    _raise_own(observation, 11)
    _blocked(observation.start_error or observation.yield_error)
    assert observation.instance is not None
    second = observation.second.fields if observation.second else None
    reason = find_long_lived_credential(observation.instance.fields, second)
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
        pytest.skip("no Grain config with a [worker] specialized_type to check; name one with --sworker-config")
    stype = config.specialized_type
    if stype != target.module_name and not stype.endswith(".py"):
        pytest.skip(f"{config.path} configures {stype!r}, not {target.module_name!r}")
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
