"""Run the kit's checks on one module, directly (no pytest plugin): the verdict per rule."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from sworker_conformance.judge import Judge
from sworker_conformance.rules import ContractViolation, CouldNotJudge, Portability
from sworker_conformance.target import Target

from .corpus import Case

#: Small limits, so that broken modules fail fast.
STARTUP_TIMEOUT = 3.0
CLEANUP_LIMIT = 1.0
CALL_TIMEOUT = 3.0
#: The corpus's clients read their call limit from KIT_CALL_LIMIT, which the kit sets to this.
CALL_LIMIT = 0.5
CALL_LIMIT_ENV = "KIT_CALL_LIMIT"
CAPACITY = 4
RUN_RULES = (*range(2, 12), 13)
#: Corpus modules are imported afresh for each verdict; the shared parts (and what they hold) are not.
FRESH = "tests.kit.sworkers."
KEPT = {f"{FRESH}_parts"}


def target_for(case: Case, **limits: Any) -> Target:
    return Target(
        module_name=case.dotted,
        capacity=case.capacity or CAPACITY,
        probe_name=case.probe,
        environment_name=case.environment,
        config_path=case.config_path,
        startup_timeout=limits.get("startup_timeout", STARTUP_TIMEOUT),
        cleanup_limit=limits.get("cleanup_limit", CLEANUP_LIMIT),
        call_timeout=limits.get("call_timeout", CALL_TIMEOUT),
        call_limit=limits.get("call_limit", CALL_LIMIT),
        call_limit_env=CALL_LIMIT_ENV,
    )


def judge(case: Case, loops: tuple[str, ...] = ("trio",), **limits: Any) -> tuple[dict[str, dict[int, str]], float]:
    """Per loop, rule number -> "pass", "skip: ...", "Rule N: ..." (a violation), "portability: ..." or
    "error: ..."; and how long the whole verdict took (environment included).

    Rules 1 and 12 need no run: they are judged once, with the first loop's verdicts.
    """
    target = target_for(case, **limits)
    started = time.monotonic()
    if case.config:  # a config snippet: the module itself is judged by its own case
        static = {rule: _verdict(lambda rule=rule: Judge(target).verdict(rule)) for rule in (1, 2, 12)}
        return {loops[0]: static}, time.monotonic() - started
    for name in list(sys.modules):  # a fresh import, inside this case's environment (settings read at import)
        if (name.startswith(FRESH) and name not in KEPT) or name == target.module_name:
            del sys.modules[name]
    with target.environment():
        referee = Judge(target)
        verdicts: dict[str, dict[int, str]] = {loop: {} for loop in loops}
        verdicts[loops[0]] = {1: _verdict(lambda: referee.verdict(1)), 12: _verdict(lambda: referee.verdict(12))}
        for loop in loops:
            for rule in RUN_RULES:
                verdicts[loop][rule] = _verdict(lambda rule=rule, loop=loop: referee.verdict(rule, loop))
    return verdicts, time.monotonic() - started


def _verdict(run: Any) -> str:
    try:
        run()
    except ContractViolation as violation:
        return f"Rule {violation.rule.number}: {violation.observed} Fix: {violation.fix}"
    except CouldNotJudge as unjudged:
        return f"{'error' if unjudged.blocking else 'skip'}: {unjudged}"
    except Portability as finding:
        return f"portability: {finding}"
    except pytest.skip.Exception as skip:
        return f"skip: {skip.msg}"
    except BaseException as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "pass"


def failing(verdicts: dict[int, str]) -> dict[int, str]:
    return {rule: text for rule, text in verdicts.items() if not text.startswith(("pass", "skip", "portability"))}
