"""The kit end to end: pytest with the plugin, in a subprocess, on corpus modules.

The report must name the rule and stay readable: one line per failure, no traceback wall.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from .conftest import KIT, TEMPLATE
from .corpus import PROBE, SERVICE

RUN_TIMEOUT = 120


def run_kit(module: str, *extra: str) -> subprocess.CompletedProcess[str]:
    # -c: the template's own ini (the Jinja pyproject.toml beside the kit is not TOML until baked).
    command = [sys.executable, "-m", "pytest", str(KIT), "-c", str(TEMPLATE / "pytest.ini"), "-p", "no:cacheprovider"]
    command += ["-q", "-rfsx"]
    command += ["--sworker", module, "--sworker-startup-timeout", "2", "--sworker-cleanup-limit", "1", *extra]
    env = {**os.environ, "PYTHONPATH": str(TEMPLATE)}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(command, cwd=TEMPLATE, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)


def failed_rules(output: str) -> set[int]:
    return {int(number) for number in re.findall(r"^FAILED \S+test_rule_(\d+)_", output, re.MULTILINE)}


@pytest.mark.parametrize(
    ("module", "extra", "rule"),
    [
        ("r03_duplicate_name", [], 3),
        ("r07_asyncio_sleep", ["--sworker-environment", SERVICE], 7),
        ("r10_empty_on_eof", [], 10),
    ],
)
def test_report_names_the_rule(module: str, extra: list[str], rule: int) -> None:
    result = run_kit(f"tests.kit.sworkers.{module}", "--sworker-probe", PROBE, *extra)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert failed_rules(output) == {rule}, output[-4000:]
    assert f"Rule {rule} (" in output
    assert "Traceback" not in output and "def " not in output, output[-4000:]  # no traceback wall


def test_asyncio_only_code_fails_under_trio_only() -> None:
    result = run_kit("tests.kit.sworkers.r07_asyncio_sleep", "--sworker-probe", PROBE, "--sworker-environment", SERVICE)
    output = result.stdout
    assert "FAILED" in output and "test_rule_07_trio_and_no_blocking[trio]" in output, output[-4000:]
    assert "test_rule_07_trio_and_no_blocking[asyncio]" not in output.split("short test summary")[-1]
    assert "[trio] Rule 7" in output and "needs asyncio" in output


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("tests.kit.sworkers.good_server", ["--sworker-probe", PROBE]),
        ("grain.local_sworker", []),
    ],
)
def test_good_modules_pass(module: str, extra: list[str]) -> None:
    result = run_kit(module, *extra)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "failed" not in result.stdout.splitlines()[-1]


def test_rule_12_reads_the_named_config() -> None:
    config = TEMPLATE / "tests" / "kit" / "configs" / "memory_without_cores.toml"
    result = run_kit(
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
