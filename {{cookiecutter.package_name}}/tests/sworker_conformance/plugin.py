"""The kit as a pytest plugin: options, the target fixture, trio runs, readable reports.

Every lifecycle check runs twice: under asyncio (through pytest-asyncio) and
under trio (run here, in a thread with a deadline so that a teardown that never
ends fails instead of hanging the suite). Grain runs trio only, so a failure
under asyncio is reported as a portability finding, never as a failure.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

from .instance import ProbeFailed, describe, first_violation
from .target import Target, read_worker_config

#: Parametrize an ``async def`` test with this to run it under asyncio (portability) and trio (Grain).
LOOPS = [
    pytest.param("asyncio", marks=pytest.mark.asyncio, id="asyncio"),
    pytest.param("trio", marks=pytest.mark.sworker_trio, id="trio"),
]
TRIO_DEADLINE = 180.0
DEFAULT_FOREIGN_CAPACITY = 4

_asyncio_outcomes: dict[str, str | None] = {}
_trio_failed: set[str] = set()
_portability: list[tuple[str, str, str]] = []


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
        default=30.0,
        help="seconds grain_run_sworker may take to yield (rule 9)",
    )
    group.addoption("--sworker-cleanup-limit", type=float, default=10.0, help="seconds teardown may take (rule 6)")
    parser.addini("sworker_probe", "the package's own probe (module:function), used for its own sworker")
    parser.addini("sworker_environment", "the package's own environment (module:function), used for its own sworker")
    parser.addini(
        "sworker_config", "the Grain config to read (default: grain.toml in the rootdir)", default="grain.toml"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: the generic sworker conformance kit")
    config.addinivalue_line("markers", "sworker_trio: run this async test under trio, as Grain does")


def build_target(config: pytest.Config) -> Target:
    """The module under test and its settings, from the command line, else from the package's config."""
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
    return Target(
        module_name=module_name,
        capacity=capacity,
        probe_name=option("--sworker-probe") or (config.getini("sworker_probe") if own else ""),
        environment_name=option("--sworker-environment") or (config.getini("sworker_environment") if own else ""),
        config_path=config_path if worker else None,
        startup_timeout=option("--sworker-startup-timeout"),
        cleanup_limit=option("--sworker-cleanup-limit"),
    )


@pytest.fixture(scope="session")
def sworker_target(pytestconfig: pytest.Config) -> Target:
    """The sworker module under test, with its probe, environment and limits."""
    return build_target(pytestconfig)


@pytest.fixture(scope="session")
def sworker_environment(sworker_target: Target) -> Iterator[Mapping[str, str]]:
    """What the module needs beside it (e.g. its loopback service), running for the session."""
    with sworker_target.environment() as env:
        yield env


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
    if pyfuncitem.get_closest_marker("sworker_trio") is None:
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_under_trio(functools.partial(pyfuncitem.obj, **arguments))
    return True


def _loop_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("loop") if callspec else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or item.get_closest_marker("conformance") is None:
        return
    loop = _loop_of(item)
    check = getattr(item, "originalname", item.name)
    error = call.excinfo.value if call.excinfo else None
    if error is not None and isinstance(error, pytest.skip.Exception):
        return
    violation = first_violation(error) if error is not None else None
    message = (
        str(violation)
        if violation
        else (str(error) if isinstance(error, ProbeFailed) else describe(error))
        if error
        else None
    )
    if loop == "asyncio":
        _asyncio_outcomes[check] = message
        if error is not None:
            # Grain never runs asyncio: report, don't fail.
            report.outcome = "skipped"
            report.wasxfail = f"portability (asyncio; Grain runs trio, whose run of this check decides): {message}"
            _portability.append((check, item.nodeid, message or ""))
        return
    if error is None:
        return
    _trio_failed.add(check)
    if loop == "trio" and check in _asyncio_outcomes and _asyncio_outcomes[check] is None:
        message = f"{message} (This passes under asyncio but fails under trio, which Grain runs.)"
    if violation is not None or isinstance(error, ProbeFailed):
        report.longrepr = f"[{loop or 'static'}] {message}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # A check that fails under trio too is a failure, reported as such: not a portability finding.
    findings = [(nodeid, message) for check, nodeid, message in _portability if check not in _trio_failed]
    if not findings:
        return
    terminalreporter.section("sworker portability (asyncio)")
    terminalreporter.write_line(
        "These checks fail under asyncio only. Grain runs trio, so they are not failures; "
        "code written against anyio runs under both."
    )
    for nodeid, message in findings:
        terminalreporter.write_line(f"- {nodeid}: {message}")
