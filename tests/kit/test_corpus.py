"""The kit judges every corpus module by the rule it breaks, and passes the good ones (direct calls)."""

from __future__ import annotations

import pytest

from .corpus import BROKEN, GOOD, Case
from .verdicts import failing, judge

#: Modules judged under asyncio too: anyio code must give the same verdict there.
ASYNCIO_SUBSET = {
    "good_server",
    "good_backendless",
    "grain.local_sworker",
    "r03_duplicate_name",
    "r04_set",
    "r05_context_rejects_field",
    "r06_cleanup_after_yield",
    "r08_no_lock",
    "r10_empty_on_eof",
    "r11_fixed_credential",
}


def _expect(case: Case, verdicts: dict[int, str]) -> None:
    failed = failing(verdicts)
    expected = {case.rule} if case.rule else set()
    report = "\n".join(f"  rule {rule}: {text[:300]}" for rule, text in verdicts.items())
    assert set(failed) == expected, f"{case.id}: expected failures {expected}, got {sorted(failed)}\n{report}"
    for rule, text in failed.items():
        assert text.startswith(f"Rule {rule}:"), text  # a ContractViolation, not a crash of the kit


@pytest.mark.parametrize("case", GOOD + BROKEN, ids=lambda case: case.id)
def test_verdict_under_trio(case: Case) -> None:
    _expect(case, judge(case, "trio"))


@pytest.mark.parametrize(
    "case", [case for case in GOOD + BROKEN if case.id in ASYNCIO_SUBSET], ids=lambda case: case.id
)
def test_verdict_under_asyncio(case: Case) -> None:
    _expect(case, judge(case, "asyncio"))


@pytest.mark.parametrize("module", ["r07_asyncio_sleep", "r07_asyncio_open_connection"])
def test_asyncio_only_code_passes_under_asyncio(module: str) -> None:
    """What makes rule 7 a trio finding: the same module is fine under asyncio."""
    assert failing(judge(Case(module, None, "tests.kit.sworkers._parts:echo_service"), "asyncio")) == {}


def test_good_modules_leave_their_violations_unreported() -> None:
    """A good module's verdicts are passes, or skips that say why (no config, no probe)."""
    verdicts = judge(GOOD[0])
    assert verdicts[12].startswith("skip: no Grain config")
    assert all(text == "pass" for rule, text in verdicts.items() if rule != 12)


@pytest.fixture(autouse=True)
def _close_leaked_sockets():
    yield
    from tests.kit.sworkers import r06_leaked_socket

    while r06_leaked_socket._metrics:
        r06_leaked_socket._metrics.pop().close()
