"""The conformance checks, one test per contract rule (numbered as in the README).

Lifecycle checks are judged on a run under trio (what Grain runs: a failure
there is a failure) and one under asyncio (portability, reported). Each run is
made once, by the first test that needs it, and bounded (see observation.py).
"""

from __future__ import annotations

import pytest

from .judge import Judge
from .plugin import KIT_LOOPS, judge_probe_given, judge_rule

pytestmark = pytest.mark.conformance


def test_rule_01_config_dict(sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 1)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_02_async_context_managers(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 2, loop)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_03_yielded_name(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 3, loop)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_04_fields_survive_msgpack(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 4, loop)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_05_context_accepts_fields(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 5, loop)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_06_cleanup_under_cancellation(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 6, loop)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_07_trio_and_no_blocking(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 7, loop)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_08_concurrent_tasklets(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 8, loop)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_09_bounded_startup(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 9, loop)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_10_dead_server_raises(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 10, loop)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_11_no_credentials_in_fields(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 11, loop)


def test_rule_12_worker_config(sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 12)


@pytest.mark.parametrize("loop", KIT_LOOPS)
def test_rule_13_calls_bounded(loop: str, sworker_judge: Judge) -> None:
    judge_rule(sworker_judge, 13, loop)


def test_calls_judged_with_a_probe(sworker_judge: Judge) -> None:
    """No probe is not a pass: the rules judged on calls say so here, in one line."""
    judge_probe_given(sworker_judge)
