"""Run the kit's checks on one module, directly (no pytest plugin): the verdict per rule."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

import anyio
import pytest
from sworker_conformance import checks
from sworker_conformance.observation import observe, observe_dead_server
from sworker_conformance.rules import ContractViolation
from sworker_conformance.target import Target

from .corpus import Case

#: Small limits, so that broken modules fail fast.
STARTUP_TIMEOUT = 1.5
CLEANUP_LIMIT = 1.0
CAPACITY = 4


def target_for(case: Case) -> Target:
    return Target(
        module_name=case.dotted,
        capacity=CAPACITY,
        probe_name=case.probe,
        environment_name=case.environment,
        config_path=case.config_path,
        startup_timeout=STARTUP_TIMEOUT,
        cleanup_limit=CLEANUP_LIMIT,
    )


def judge(case: Case, backend: str = "trio") -> dict[int, str]:
    """Rule number -> "pass", "skip: ...", "Rule N: ..." (a violation) or "error: ..." (anything else)."""
    target = target_for(case)
    if case.config:  # a config snippet: the module itself is judged by its own case
        return _judge_static(target)
    with target.environment():
        try:
            importlib.import_module(target.module_name)
        except Exception as exc:  # pragma: no cover - the corpus imports
            raise AssertionError(f"{target.module_name} does not import: {exc!r}") from exc
        observation, dead = anyio.run(_observe_both, target, backend=backend)
    runs: dict[int, Any] = {
        1: lambda: checks.check_config(target),
        2: lambda: (checks.check_signatures(target), checks.check_entry_points_enter(observation)),
        3: lambda: checks.check_yielded_name(target, observation),
        4: lambda: checks.check_fields_survive_msgpack(observation),
        5: lambda: checks.check_context_accepts_fields(observation),
        6: lambda: checks.check_cleanup(target, observation),
        7: lambda: checks.check_event_loop_friendly(target, observation),
        8: lambda: checks.check_concurrent_clients(target, observation),
        9: lambda: checks.check_startup_bounded(observation),
        10: lambda: checks.check_dead_server_raises(target, dead),
        11: lambda: checks.check_no_credentials(observation),
        12: lambda: checks.check_config_snippet(target),
    }
    return {rule: _verdict(run) for rule, run in runs.items()}


def _judge_static(target: Target) -> dict[int, str]:
    verdicts = {}
    for rule, run in ((1, checks.check_config), (2, checks.check_signatures), (12, checks.check_config_snippet)):
        verdicts[rule] = _verdict(lambda run=run: run(target))
    return verdicts


def _verdict(run: Any) -> str:
    try:
        run()
    except ContractViolation as violation:
        return f"Rule {violation.rule.number}: {violation.observed}"
    except pytest.skip.Exception as skip:
        return f"skip: {skip.msg}"
    except BaseException as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "pass"


async def _observe_both(target: Target) -> tuple[Any, Any]:
    with contextlib.suppress(Exception):
        target.module  # noqa: B018  (import errors are rule 1's business)
    return await observe(target), await observe_dead_server(target)


def failing(verdicts: dict[int, str]) -> dict[int, str]:
    return {rule: text for rule, text in verdicts.items() if not text.startswith(("pass", "skip"))}
