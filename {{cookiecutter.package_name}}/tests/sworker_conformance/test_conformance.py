"""The conformance checks, one test per contract rule (numbered as in the README).

Lifecycle checks run under asyncio (portability, reported) and under trio
(what Grain runs: a failure there is a failure).
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from . import checks
from .observation import observed, observed_dead_server
from .plugin import LOOPS
from .target import Target

pytestmark = [pytest.mark.conformance, pytest.mark.usefixtures("sworker_environment")]

Env = Mapping[str, str]


def test_rule_01_config_dict(sworker_target: Target) -> None:
    checks.check_config(sworker_target)


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_02_async_context_managers(loop: str, sworker_target: Target) -> None:
    checks.check_signatures(sworker_target)
    checks.check_entry_points_enter(await observed(sworker_target))


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_03_yielded_name(loop: str, sworker_target: Target) -> None:
    checks.check_yielded_name(sworker_target, await observed(sworker_target))


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_04_fields_survive_msgpack(loop: str, sworker_target: Target) -> None:
    checks.check_fields_survive_msgpack(await observed(sworker_target))


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_05_context_accepts_fields(loop: str, sworker_target: Target) -> None:
    checks.check_context_accepts_fields(await observed(sworker_target))


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_06_cleanup_under_cancellation(loop: str, sworker_target: Target) -> None:
    checks.check_cleanup(sworker_target, await observed(sworker_target))


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_07_trio_and_no_blocking(loop: str, sworker_target: Target) -> None:
    checks.check_event_loop_friendly(sworker_target, await observed(sworker_target))


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_08_concurrent_tasklets(loop: str, sworker_target: Target) -> None:
    checks.check_concurrent_clients(sworker_target, await observed(sworker_target))


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_09_bounded_startup(loop: str, sworker_target: Target) -> None:
    checks.check_startup_bounded(await observed(sworker_target))


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_10_dead_server_raises(loop: str, sworker_target: Target) -> None:
    checks.check_dead_server_raises(sworker_target, await observed_dead_server(sworker_target))


@pytest.mark.parametrize("loop", LOOPS)
async def test_rule_11_no_credentials_in_fields(loop: str, sworker_target: Target) -> None:
    checks.check_no_credentials(await observed(sworker_target))


def test_rule_12_worker_config(sworker_target: Target) -> None:
    checks.check_config_snippet(sworker_target)
