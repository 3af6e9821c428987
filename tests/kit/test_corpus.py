"""The kit judges every corpus module by the rule it breaks, and passes the good ones (direct calls).

Each verdict is also timed: it must come within the kit's bound (start-up limit +
cleanup limit + 15 s, here with the corpus's small limits), and nothing the module
started may be left once the verdict is in.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import anyio
import pytest
from sworker_conformance.footprint import Footprint
from sworker_conformance.instance import describe
from sworker_conformance.judge import Judge
from sworker_conformance.rules import CouldNotJudge
from sworker_conformance.target import CALL_LIMIT_SLACK, VERDICT_SLACK

from tests.kit.sworkers._parts import KEPT_FOR_THE_PROCESS, LEAKED  # the name the corpus modules import it by

from .corpus import BROKEN, GOOD, PACKAGE, PROBE, SERVICE, Case
from .verdicts import CALL_LIMIT, CLEANUP_LIMIT, STARTUP_TIMEOUT, failing, judge, target_for

BOUND = STARTUP_TIMEOUT + CLEANUP_LIMIT + CALL_LIMIT + VERDICT_SLACK
#: Modules judged under asyncio too: anyio code gives the same verdict there; trio-only code is portability.
ASYNCIO_SUBSET = {
    "good_server",
    "good_backendless",
    "chem_anyio_process",
    "chem_trio_nursery",
    "cloud_sdk_backendless",
    "r06_cleanup_30s",
    "r08_no_lock",
    "r09_never_ready",
    "r10_empty_on_eof",
    "r06_popen_cleanup_after_yield",  # fails to start under asyncio after its spawn: reaped all the same
    "r07_asyncio_redis",  # fine under asyncio; what it leaves under trio is Rule 7's, not the kit's
    "good_module_level_client",  # its trio client, used again under asyncio: not a portability finding
    "r13_no_call_limit",
}
TIMES: list[float] = []
#: What some verdicts must say: a report that leads to the line (rule 7), or to the fix.
SAYS = {
    "r07_client_per_request": ["ssl.py:", "r07_client_per_request.py:", "httpx.AsyncClient(", "once, in grain_context"],
    "r07_first_call_stall": ["during the first probe call", "r07_first_call_stall.py:", "in fetch_token"],
    "r07_blocking_per_request": ["_parts.py:", "time.sleep(self._block_after_reply)"],
    "r09_never_ready": ["within 3 s", "--sworker-startup-timeout"],
    "r07_small_block_per_request-V1": ["in every round of 1 concurrent", "time.sleep(self._blocking)"],
    "r07_blocks_for_good": ["never came back", "r07_blocks_for_good.py:", "time.sleep(BLOCKING_SECONDS)"],
    "r08_lock_per_request": ["the server refused: busy"],
    "r07_sync_redis_on_loop": ["reply came 200 ms late", "r07_sync_redis_on_loop.py:", "self._redis.echo(x)"],
    "r07_asyncio_redis": ["needs asyncio", "There is no current event loop"],
    "r13_no_call_limit": ["stalled server", "within 0.5 s", "--sworker-call-limit", "never timeout=None"],
    "r06_client_never_closed": ["outlive", "still open after the grain_context of", "finally:"],
    "r06_popen_cleanup_after_yield": ["echo_server.py", "Code after a bare yield never runs"],
    "r05_missing_setting": ["names a setting missing", "KIT_API_TOKEN", "--sworker-environment"],
    "r08_rate_limited": ["429 Too Many Requests", "Capacity V", "a lock does not help"],
    "r08_retry_after_wait": ["waiting to retry", "_sleep_before_retry", "Capacity V", "capped"],
}

#: What those verdicts must not say: the fix for another shape of code.
NEVER_SAYS = {
    "r05_missing_setting": ["make grain_context's parameters match"],
    "r08_rate_limited": ["anyio.Lock"],
    "r08_retry_after_wait": ["anyio.Lock"],
}


def _expect(case: Case, verdicts: dict[int, str], seconds: float) -> None:
    """``verdicts``: the first loop's (rules 1 and 12 with them)."""
    report = "\n".join(f"  rule {rule}: {text[:300]}" for rule, text in verdicts.items())
    failed = set(failing(verdicts))
    expected = {case.rule} if case.rule else set()
    assert failed == expected, f"{case.id}: expected failures {expected}, got {sorted(failed)}\n{report}"
    for rule in failed:
        assert verdicts[rule].startswith(f"Rule {rule}:"), verdicts[rule]  # a violation, not a crash of the kit
        for text in SAYS.get(case.id, []):
            assert text in verdicts[rule], (text, verdicts[rule])
        for text in NEVER_SAYS.get(case.id, []):
            assert text not in verdicts[rule], (text, verdicts[rule])
    assert seconds <= BOUND, f"{case.id}: the verdict took {seconds:.1f} s, over the bound of {BOUND:g} s"


@pytest.fixture(autouse=True)
def _nothing_left() -> Iterator[None]:
    """Whatever the module started is gone once its verdict is in (the kit kills what it left)."""
    before = Footprint.now()
    yield
    while LEAKED:
        LEAKED.pop().close()
    while KEPT_FOR_THE_PROCESS:
        anyio.run(KEPT_FOR_THE_PROCESS.pop().aclose, backend="trio")
    left = Footprint.now().added_since(before)
    left.kill()
    assert not left, f"left behind: {left.describe()}"


@pytest.mark.parametrize("case", GOOD + BROKEN, ids=lambda case: case.id)
def test_verdict_under_trio(case: Case) -> None:
    verdicts, seconds = judge(case, ("trio",))
    TIMES.append(seconds)
    _expect(case, verdicts["trio"], seconds)


@pytest.mark.parametrize(
    "case", [case for case in GOOD + BROKEN if case.id in ASYNCIO_SUBSET], ids=lambda case: case.id
)
def test_verdict_under_both_loops(case: Case) -> None:
    """The asyncio run changes no trio verdict, and reports only what asyncio itself shows."""
    verdicts, seconds = judge(case, ("trio", "asyncio"))
    _expect(case, verdicts["trio"], seconds)
    under_asyncio = verdicts["asyncio"]
    if case.module in ("r06_cleanup_30s", "r09_never_ready"):  # a wait judged under trio is not repeated
        assert all(text.startswith("skip: ") and "not run under asyncio" in text for text in under_asyncio.values())
    if case.module == "good_module_level_client":  # calls not judged again, and said why: no finding
        assert all(under_asyncio[rule].startswith("skip: ") and "kept at module level" in under_asyncio[rule]
                   for rule in (5, 7, 8, 10, 13)), under_asyncio  # fmt: skip
        assert not any(text.startswith("portability") for text in under_asyncio.values()), under_asyncio
    if case.module == "chem_trio_nursery":  # trio only: portability, never a failure
        assert all(text.startswith("portability: ") and "needs trio" in text for text in under_asyncio.values())
        return
    unexpected = {rule: text for rule, text in failing(under_asyncio).items() if rule != case.rule}
    assert not unexpected, f"{case.id} under asyncio: {unexpected}"


@pytest.mark.parametrize("module", ["r07_asyncio_sleep", "r07_asyncio_open_connection"])
def test_asyncio_only_code_passes_under_asyncio(module: str) -> None:
    """What makes rule 7 a trio finding: the same module is fine under asyncio."""
    verdicts, _ = judge(Case(module, None, "tests.kit.sworkers._parts:echo_service"), ("asyncio",))
    assert failing(verdicts["asyncio"]) == {}, verdicts


@pytest.mark.parametrize("probe", ["probe", "probe_on_the_loop"])
def test_a_probe_that_needs_asyncio_breaks_rule_7_and_nothing_else(probe: str) -> None:
    """The probe's call is at fault, not grain_context: that started, so Rule 5 passes; 8 and 10 say why not."""
    case = Case("r07_asyncio_probe", 7, SERVICE, probe=f"{PACKAGE}.r07_asyncio_probe:{probe}")
    by_loop, seconds = judge(case)
    verdicts = by_loop["trio"]
    _expect(case, verdicts, seconds)
    assert "the probe call needs asyncio" in verdicts[7], verdicts[7]
    assert verdicts[5] == "pass", verdicts[5]
    for rule in (8, 10):
        assert "the probe call needs asyncio" in verdicts[rule], verdicts[rule]


def test_good_modules_leave_their_violations_unreported() -> None:
    """A good module's verdicts are passes, or skips that say why (no config, no probe)."""
    verdicts = judge(GOOD[0])[0]["trio"]
    assert verdicts[12].startswith("skip: the kit could not judge Rule 12: there is no Grain config")
    assert all(text == "pass" for rule, text in verdicts.items() if rule != 12)


@pytest.mark.parametrize(
    ("case", "rules", "says"),
    [
        (Case("x_import_fails", None), range(1, 13), "importing tests.kit.sworkers.x_import_fails raised RuntimeError"),
        (Case("good_server", None, probe=f"{PROBE.split(':')[0]}:no_such_probe"), (7, 8, 10), "does not load"),
        (Case("good_server", None, "tests.kit.sworkers.x_import_fails:environment"), range(1, 13), "did not start"),
    ],
    ids=["import-fails", "probe-does-not-load", "environment-does-not-start"],
)
def test_what_keeps_the_kit_from_judging_is_said_in_one_line(case: Case, rules: range, says: str) -> None:
    """A module that does not import, a probe or an environment that does not load: one line per rule."""
    target = target_for(case)
    try:
        with target.environment():
            pass
    except Exception as exc:  # as the plugin's environment fixture records it
        target.environment_error = describe(exc)
    referee = Judge(target)
    for rule in rules:
        with pytest.raises(CouldNotJudge) as unjudged:
            referee.verdict(rule, "trio")
        assert unjudged.value.blocking and says in str(unjudged.value), unjudged.value
        assert "\n" not in str(unjudged.value)


def test_a_call_with_no_limit_is_judged_within_the_stated_limit_and_the_slack() -> None:
    """The stalled server's wait is the stated call limit plus the kit's slack, once: the rest of the run is quick."""
    verdicts, seconds = judge(Case("r13_no_call_limit", 13, SERVICE))
    assert verdicts["trio"][13].startswith("Rule 13:"), verdicts["trio"][13]
    assert CALL_LIMIT + CALL_LIMIT_SLACK <= seconds < CALL_LIMIT + CALL_LIMIT_SLACK + 4, seconds


@pytest.mark.parametrize("module", ["r10_empty_on_eof", "r10_empty_on_reset"])
def test_the_dead_server_check_is_deterministic(module: str) -> None:
    """The same module, the same rule 10 verdict, run after run: each ending is made on purpose."""
    seen = set()
    for _ in range(3):
        verdicts, _ = judge(Case(module, None))
        seen.add(verdicts["trio"][10][:60])
    assert len(seen) == 1, seen
    assert seen.pop().startswith("Rule 10:")


def test_median_verdict_time() -> None:
    """Near a second per module (trio run, service included), on the modules judged above."""
    if len(TIMES) < 20:
        pytest.skip("needs the corpus run first (run the whole file)")
    median = statistics.median(TIMES)
    print(f"corpus: {len(TIMES)} verdicts, median {median:.2f} s, longest {max(TIMES):.2f} s (bound {BOUND:g} s)")
    assert median < 2.0, median
