"""Each baked package's own suite (conformance kit + real Grain) passes as baked."""

from __future__ import annotations

from pathlib import Path

from conftest import run

SUITE_TIMEOUT = 400


def test_the_generated_suite_passes(baked: Path) -> None:
    result = run(["python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"], baked, timeout=SUITE_TIMEOUT)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
