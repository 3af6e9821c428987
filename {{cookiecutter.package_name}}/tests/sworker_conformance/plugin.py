"""The kit as a pytest plugin: options, the target and judge fixtures, readable one-line reports.

Every lifecycle check is judged on two runs of the module: under trio (what
Grain runs: a failure there is a failure) and under asyncio (portability: a
failure there is reported, never failed). Each run happens in a thread of its
own with its own event loop, so that the kit can stop waiting for it (see
observation.py). A report is one line: "Rule N (...) is broken: ... Fix: ..."
or "the kit could not judge Rule N: ...", never a traceback.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from .checks import CALL_RULES
from .instance import describe
from .judge import Judge
from .observation import GarbageCatcher
from .rules import ContractViolation, CouldNotJudge, NoProbe, Portability
from .target import (
    CALL_LIMIT_SLACK,
    DEFAULT_CALL_LIMIT,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CLEANUP_LIMIT,
    DEFAULT_STARTUP_TIMEOUT,
    CallLimit,
    Target,
    read_worker_config,
)

#: Parametrize an ``async def`` test with this to run it under asyncio and trio (for a package's own tests).
LOOPS = [
    pytest.param("asyncio", marks=pytest.mark.asyncio, id="asyncio"),
    pytest.param("trio", marks=pytest.mark.sworker_trio, id="trio"),
]
#: The event loops the kit's own checks judge, trio (Grain's) first.
KIT_LOOPS = ["trio", "asyncio"]
TRIO_DEADLINE = 180.0
DEFAULT_FOREIGN_CAPACITY = 4
RULE_OF_TEST = re.compile(r"test_rule_(\d+)_")

_trio_failed: set[str] = set()
_portability: list[tuple[str, str, str]] = []
_judges: list[Judge] = []
#: What the module's objects left to the garbage collector after its runs (collected during a later check).
_late_garbage: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sworker", "sworker conformance kit")
    group.addoption(
        "--sworker",
        default=None,
        help="dotted name of the sworker module to check (default: grain.toml's specialized_type)",
    )
    group.addoption(
        "--sworker-probe", default=None, help="module:function, an async probe(client) making one representative call"
    )
    group.addoption(
        "--sworker-no-probe",
        action="store_true",
        help=f"judge without a probe: Rules {', '.join(map(str, CALL_RULES))} are not judged (the summary says so)",
    )
    group.addoption(
        "--sworker-environment",
        default=None,
        help="module:function, a context manager running what the module needs (e.g. its service), yielding env vars",
    )
    group.addoption(
        "--sworker-config",
        default=None,
        help="the Grain config whose [worker] section is checked (default: grain.toml)",
    )
    group.addoption(
        "--sworker-capacity", type=int, default=None, help="V: concurrent calls per instance (default: from the config)"
    )
    group.addoption(
        "--sworker-startup-timeout",
        type=float,
        default=DEFAULT_STARTUP_TIMEOUT,
        help=f"seconds grain_run_sworker may take to yield (rule 9; default {DEFAULT_STARTUP_TIMEOUT:g})",
    )
    group.addoption(
        "--sworker-cleanup-limit",
        type=float,
        default=DEFAULT_CLEANUP_LIMIT,
        help=f"seconds each teardown may take (rule 6; default {DEFAULT_CLEANUP_LIMIT:g})",
    )
    group.addoption(
        "--sworker-call-timeout",
        type=float,
        default=DEFAULT_CALL_TIMEOUT,
        help=f"seconds one probe call, or grain_context's start, may take (default {DEFAULT_CALL_TIMEOUT:g})",
    )
    group.addoption(
        "--sworker-call-limit",
        type=float,
        default=None,
        help=f"seconds within which the module's calls raise when the server stalls (rule 13; default "
        f"{DEFAULT_CALL_LIMIT:g}, or the package's own, from its sworker_call_limit fixture); the kit waits "
        f"{CALL_LIMIT_SLACK:g} s more",
    )
    group.addoption(
        "--sworker-call-limit-env",
        default=None,
        help="the environment variable the module reads its call limit from: the kit sets it to the call limit "
        "while it runs the module",
    )
    parser.addini("sworker_probe", "the package's own probe (module:function), used for its own sworker")
    parser.addini("sworker_environment", "the package's own environment (module:function), used for its own sworker")
    parser.addini(
        "sworker_config", "the Grain config to read (default: grain.toml in the rootdir)", default="grain.toml"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: the generic sworker conformance kit")
    config.addinivalue_line("markers", "sworker_trio: run this async test under trio, as Grain does")


def build_target(config: pytest.Config, own_call_limit: CallLimit | None = None) -> Target:
    """The module under test and its settings, from the command line, else from the package's config
    (``own_call_limit``: the package's own, for its own sworker)."""
    option = config.getoption
    config_path = Path(option("--sworker-config") or config.getini("sworker_config"))
    if not config_path.is_absolute():
        config_path = config.rootpath / config_path
    worker = read_worker_config(config_path)
    module_name = option("--sworker") or (worker.specialized_type if worker else None)
    if not module_name:
        raise pytest.UsageError(
            f"no sworker module to check: pass --sworker package.module, or have {config_path} name one in "
            "[worker] specialized_type"
        )
    own = worker is not None and module_name == worker.specialized_type
    capacity = option("--sworker-capacity") or (worker.capacity if own and worker else DEFAULT_FOREIGN_CAPACITY)
    own_limit = own_call_limit if own else None
    return Target(
        module_name=module_name,
        capacity=capacity,
        probe_name=option("--sworker-probe") or (config.getini("sworker_probe") if own else ""),
        environment_name=option("--sworker-environment") or (config.getini("sworker_environment") if own else ""),
        config_path=config_path if worker else None,
        startup_timeout=option("--sworker-startup-timeout"),
        cleanup_limit=option("--sworker-cleanup-limit"),
        call_timeout=option("--sworker-call-timeout"),
        call_limit=option("--sworker-call-limit") or (own_limit.seconds if own_limit else DEFAULT_CALL_LIMIT),
        call_limit_env=option("--sworker-call-limit-env") or (own_limit.environment_variable if own_limit else ""),
        no_probe_accepted=option("--sworker-no-probe"),
    )


@pytest.fixture(scope="session")
def sworker_call_limit() -> CallLimit | None:
    """The package's own call limit for the kit's runs of its own sworker (rule 13): none here.

    A package overrides this fixture in its conftest.py, e.g. ``return CallLimit(2.0, "PKG_CALL_TIMEOUT")``:
    the kit then sets PKG_CALL_TIMEOUT=2 while it runs the module, and expects a call on a stalled
    server to raise within 2 s. ``--sworker-call-limit`` and ``--sworker-call-limit-env`` take precedence.
    """
    return None


@pytest.fixture(scope="session")
def sworker_target(pytestconfig: pytest.Config, sworker_call_limit: CallLimit | None) -> Target:
    """The sworker module under test, with its probe, environment and limits."""
    return build_target(pytestconfig, sworker_call_limit)


@pytest.fixture(scope="session")
def sworker_environment(sworker_target: Target) -> Iterator[Mapping[str, str]]:
    """What the module needs beside it (e.g. its loopback service), running for the session.

    If it does not start, every check says so in one line (the kit could not judge).
    """
    with ExitStack() as stack:
        try:
            env: Mapping[str, str] = stack.enter_context(sworker_target.environment())
        except Exception as exc:
            sworker_target.environment_error = describe(exc)
            env = {}
        yield env


@pytest.fixture(scope="session")
def sworker_judge(sworker_target: Target, sworker_environment: Mapping[str, str]) -> Judge:
    """The module's runs (made once per event loop) and its verdicts."""
    judge = Judge(sworker_target)
    _judges.append(judge)
    return judge


def judge_rule(judge: Judge, rule: int, loop: str | None = None) -> None:
    """A test's body: the verdict, with "could not judge" (when nothing is to be done) as a skip."""
    try:
        judge.verdict(rule, loop)
    except CouldNotJudge as unjudged:
        if not unjudged.blocking:
            pytest.skip(str(unjudged))
        raise


def judge_probe_given(judge: Judge) -> None:
    """No probe is not a pass: without one, the rules judged on calls fail here, in one line (unless the
    author chose --sworker-no-probe, which the summary shows)."""
    if judge.target.probe_name or judge.probe_error:
        return  # a probe was given (one that does not load fails the rules that need it)
    if judge.target.no_probe_accepted:
        pytest.skip(f"--sworker-no-probe: Rules {', '.join(map(str, CALL_RULES))} are not judged on calls")
    raise NoProbe(CALL_RULES)


def run_under_trio(function: Callable[[], Any], deadline: float = TRIO_DEADLINE) -> None:
    """``trio.run(function)`` in a thread; fail if it has not finished by ``deadline``."""
    outcome: dict[str, BaseException] = {}

    def main() -> None:
        try:
            trio.run(function)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=main, name="sworker-trio", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        pytest.fail(
            f"the check did not finish within {deadline:g} s under trio: a start-up or teardown that never ends"
        )
    if "error" in outcome:
        raise outcome["error"]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test marked ``sworker_trio`` under trio (see ``LOOPS``)."""
    if pyfuncitem.get_closest_marker("sworker_trio") is None:
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_under_trio(functools.partial(pyfuncitem.obj, **arguments))
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    """Catch what the module's objects leave when they are collected after its runs, during a later check:
    it is the module's, told in the summary, never a warning that fails whichever check was running then."""
    if item.get_closest_marker("conformance") is None:
        yield
        return
    with GarbageCatcher() as late:
        yield
    _late_garbage.extend(text for text in late.seen if text not in _late_garbage)


def _loop_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("loop") if callspec else None


def _one_line(item: pytest.Item, error: BaseException) -> str:
    """The report for ``error``: a verdict as it is, anything else as what kept the kit from judging."""
    if isinstance(error, ContractViolation | CouldNotJudge | Portability | NoProbe):
        return str(error)
    match = RULE_OF_TEST.search(item.name)
    rule = f"Rule {int(match.group(1))}" if match else "this rule"
    return f"the kit could not judge {rule}: the kit failed: {describe(error)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or item.get_closest_marker("conformance") is None:
        return
    error = call.excinfo.value if call.excinfo else None
    if isinstance(error, pytest.skip.Exception):
        path, line, _ = item.location
        report.longrepr = (path, (line or 0) + 1, f"Skipped: {error.msg}")  # the test's place, not the plugin's
        return
    if error is None:
        return
    loop = _loop_of(item)
    check = getattr(item, "originalname", item.name)
    message = _one_line(item, error)
    if loop == "asyncio":
        # Grain never runs asyncio: report, don't fail.
        report.outcome = "skipped"
        report.wasxfail = f"portability (asyncio; Grain runs trio, whose run of this check decides): {message}"
        _portability.append((check, item.nodeid, message))
        return
    _trio_failed.add(check)
    report.longrepr = f"[{loop or 'static'}] {message}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for judge in _judges:
        if judge.observations:
            runs = ", ".join(f"{loop} run {seconds:.1f} s" for loop, seconds in judge.seconds().items())
            terminalreporter.write_line(
                f"sworker kit: {judge.target.module_name}: {runs} (bound {judge.target.time_budget:g} s)"
            )
        if judge.target.no_probe_accepted and not judge.target.probe_name:
            terminalreporter.write_line(
                f"sworker kit: {judge.target.module_name} was judged WITHOUT a probe (--sworker-no-probe): Rules "
                f"{', '.join(map(str, CALL_RULES))} (calls, concurrency, a dead server, a stalled server) were not "
                "judged"
            )
    if _late_garbage and _judges:
        terminalreporter.write_line(
            f"sworker kit: {_judges[0].target.module_name}: its objects, collected after its runs, left (Rule 6, or "
            f"Rule 7 for asyncio-only code): {'; '.join(_late_garbage[:3])}"
        )
    # A check that fails under trio too is a failure, reported as such: not a portability finding.
    findings: dict[str, list[str]] = {}
    for check, nodeid, message in _portability:
        if check not in _trio_failed:
            match = RULE_OF_TEST.search(nodeid)
            findings.setdefault(message, []).append(str(int(match.group(1))) if match else nodeid)
    if not findings:
        return
    terminalreporter.section("sworker portability (asyncio)")
    terminalreporter.write_line(
        "These checks fail under asyncio only. Grain runs trio, so they are not failures; "
        "code written against anyio runs under both."
    )
    for message, rules in findings.items():
        terminalreporter.write_line(f"- Rule{'s' if len(rules) > 1 else ''} {', '.join(rules)}: {message}")
