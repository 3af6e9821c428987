"""The kit end to end: pytest with the plugin, in a subprocess, on corpus modules.

The report must name the rule and stay readable: one line per verdict, no traceback
wall; and it must come within the kit's bound, at its default limits too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sworker_conformance.target import DEFAULT_CLEANUP_LIMIT, DEFAULT_STARTUP_TIMEOUT, VERDICT_SLACK

from .conftest import KIT, TEMPLATE
from .corpus import PROBE, REDIS, SERVICE, SERVICE_WITH_TOKEN
from .real_grain import kill_all, tagged_processes
from .verdicts import CALL_LIMIT

RUN_TIMEOUT = 120
#: The limits most runs here use, so that broken modules fail fast (the corpus's clients read their
#: call limit from KIT_CALL_LIMIT: the kit sets it).
FAST = ["--sworker-startup-timeout", "3", "--sworker-cleanup-limit", "1", "--sworker-call-limit", "0.5"]
FAST += ["--sworker-call-limit-env", "KIT_CALL_LIMIT"]


@pytest.fixture(scope="module")
def kit_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kit as a package uses it, outside the template (whose files beside it are Jinja until baked)."""
    project = tmp_path_factory.mktemp("kit-project")
    shutil.copytree(KIT, project / "sworker_conformance", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "conftest.py").write_text('pytest_plugins = ["sworker_conformance.plugin"]\n')
    ini = "[pytest]\naddopts = -p no:cacheprovider\nasyncio_default_fixture_loop_scope = function\n"
    (project / "pytest.ini").write_text(ini)
    return project


def run_kit(
    project: Path, module: str, *extra: str, limits: list[str] = FAST, tag: str = ""
) -> subprocess.CompletedProcess[str]:
    """The kit on ``module`` in a pytest of its own (``tag``: marks the echo servers it starts, KIT_RUN_TAG)."""
    command = [sys.executable, "-m", "pytest", "sworker_conformance", "-q", "-rfsx", "-W", "error"]
    command += ["--sworker", module, *limits, *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(TEMPLATE)])}  # the kit; tests.kit.sworkers
    if tag:
        env["KIT_RUN_TAG"] = tag
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)


def failed_rules(output: str) -> set[int]:
    return {int(number) for number in re.findall(r"^FAILED \S+test_rule_(\d+)_", output, re.MULTILINE)}


def assert_readable(output: str) -> None:
    assert "Traceback" not in output and "def " not in output, output[-4000:]  # no traceback wall
    for line in output.splitlines():
        if line.startswith("[trio] ") or line.startswith("[static] "):
            assert re.match(
                r"\[\w+\] (Rule \d+ \(.*\) is broken: .* Fix: .*|the kit could not judge Rules? \d+[\d, and]*: .*)",
                line,
            )


@pytest.mark.parametrize(
    ("module", "extra", "rule", "says"),
    [
        ("r03_duplicate_name", [], 3, "both yielded the name"),
        ("r07_asyncio_sleep", ["--sworker-environment", SERVICE], 7, "needs asyncio"),
        ("r08_lock_per_request", [], 8, "Capacity = { V = 1 }"),
        ("r10_empty_on_eof", [], 10, "EOF: the server closed the connection"),
        ("r10_empty_on_reset", [], 10, "a reset: the connection was reset"),
        # Its connection's __del__ leaves a coroutine never awaited: Rule 7's, not "the kit failed" under Rule 2.
        ("r07_asyncio_redis", ["--sworker-environment", REDIS], 7, "There is no current event loop"),
        ("r07_sync_redis_on_loop", ["--sworker-environment", REDIS], 7, "reply came 200 ms late"),
        ("r13_no_call_limit", ["--sworker-environment", SERVICE], 13, "on a stalled server"),
    ],
)
def test_report_names_the_rule_and_the_fix(
    kit_project: Path, module: str, extra: list[str], rule: int, says: str
) -> None:
    result = run_kit(kit_project, f"tests.kit.sworkers.{module}", "--sworker-probe", PROBE, *extra)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert failed_rules(output) == {rule}, output[-4000:]
    assert f"Rule {rule} (" in output and says in output, output[-4000:]
    assert_readable(output)
    assert not re.search(r"^FAILED \S+\[asyncio\]", output, re.MULTILINE)  # asyncio findings: portability only
    assert "the kit failed" not in output and "Unraisable" not in output, output[-4000:]


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("grain.local_sworker", ["--sworker-no-probe"]),
        # Its server is a task of a trio nursery (run_process): killing it once cancelled the probe.
        ("tests.kit.sworkers.chem_trio_nursery", ["--sworker-probe", PROBE]),
        # Its SDK reads the service's address at import: a second copy of the service once fooled rule 10.
        (
            "tests.kit.sworkers.cloud_sdk_backendless",
            ["--sworker-probe", PROBE, "--sworker-environment", SERVICE_WITH_TOKEN],
        ),
    ],
)
def test_good_modules_pass(kit_project: Path, module: str, extra: list[str]) -> None:
    result = run_kit(kit_project, module, *extra)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert not re.search(r"\bfailed\b", result.stdout.splitlines()[-1]), output[-4000:]
    assert_readable(output)
    if module == "grain.local_sworker":  # judged without calls, by choice: the summary says so
        assert "judged WITHOUT a probe (--sworker-no-probe): Rules 7, 8, 10, 13" in result.stdout, output[-4000:]
    if module.endswith("chem_trio_nursery"):  # trio only: a portability finding under asyncio, not Rule 9
        section = result.stdout.split("sworker portability (asyncio)")[-1]
        assert "needs trio" in section and "'RunContext' object has no attribute 'runner'" in section, section
        assert "Rule 9 (" not in result.stdout


def test_nothing_is_left_whatever_stage_fails(kit_project: Path) -> None:
    """Popen, then a trio-only sleep: under trio its cleanup after yield never runs (Rule 6); under asyncio it fails
    just after the spawn. Once the kit has exited, none of the servers of either run is left."""
    tag = f"kit-e2e-{os.getpid()}-{time.monotonic_ns()}"
    result = run_kit(kit_project, "tests.kit.sworkers.r06_popen_cleanup_after_yield", "--sworker-probe", PROBE, tag=tag)
    output = result.stdout + result.stderr
    left = tagged_processes(tag)
    kill_all(left)
    assert not left, f"left after the kit exited: {left}"
    assert failed_rules(output) == {6}, output[-4000:]
    assert "needs trio" in result.stdout.split("sworker portability (asyncio)")[-1], output[-4000:]
    assert_readable(output)


def test_no_probe_is_not_a_pass(kit_project: Path) -> None:
    """Without a probe, the rules judged on calls fail in one line that names them and the option to give."""
    result = run_kit(kit_project, "grain.local_sworker")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    failed = re.findall(r"^FAILED \S+", output, re.MULTILINE)
    assert failed == ["FAILED sworker_conformance/test_conformance.py::test_calls_judged_with_a_probe"], output[-4000:]
    line = next(line for line in output.splitlines() if line.startswith("[static] "))
    assert "Rules 7, 8, 10 and 13" in line and "--sworker-probe module:function" in line, line
    assert "--sworker-no-probe" in line, line
    assert_readable(output)


def test_a_verdict_comes_within_the_bound_at_the_default_limits(kit_project: Path) -> None:
    """A 30 s cleanup: judged once, at the default cleanup and start-up limits, then killed; never once per
    loop or scenario. (The call limit is the corpus's: a good client waits it out on the stalled server.)"""
    started = time.monotonic()
    limits = ["--sworker-call-limit", str(CALL_LIMIT), "--sworker-call-limit-env", "KIT_CALL_LIMIT"]
    result = run_kit(kit_project, "tests.kit.sworkers.r06_cleanup_30s", "--sworker-probe", PROBE, limits=limits)
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    assert failed_rules(output) == {6}, output[-4000:]
    assert_readable(output)
    print(f"r06_cleanup_30s: verdict in {seconds:.1f} s at the default cleanup and start-up limits")
    assert seconds <= DEFAULT_STARTUP_TIMEOUT + DEFAULT_CLEANUP_LIMIT + CALL_LIMIT + VERDICT_SLACK, seconds
    assert seconds < 1.5 * DEFAULT_CLEANUP_LIMIT + CALL_LIMIT + 6, (
        f"{seconds:.1f} s: the {DEFAULT_CLEANUP_LIMIT:g} s wait was repeated"
    )


def test_rule_12_reads_the_named_config(kit_project: Path) -> None:
    config = TEMPLATE / "tests" / "kit" / "configs" / "memory_without_cores.toml"
    result = run_kit(
        kit_project,
        "tests.kit.sworkers.good_backendless",
        "--sworker-probe",
        PROBE,
        "--sworker-environment",
        SERVICE,
        "--sworker-config",
        str(config),
    )
    assert failed_rules(result.stdout) == {12}, result.stdout[-4000:]
    assert "memory = 4 without cores" in result.stdout
