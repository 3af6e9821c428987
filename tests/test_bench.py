"""The benchmark script runs end to end in its quick mode (no wall-clock time is asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import TEMPLATE, run


def test_bench_quick_mode_writes_the_report_and_the_plot(tmp_path: Path) -> None:
    result = run(
        [
            sys.executable,
            str(TEMPLATE / "bench" / "run.py"),
            "--quick",
            "--output",
            str(tmp_path),
        ],
        TEMPLATE,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "BENCHMARKS.md").read_text()
    for heading in (
        "## 1. Bake time",
        "## 2. Conformance suite time",
        "## 3. Real Grain",
        "## 4. Readiness latency",
        "## 5. How cost grows",
        "## 6. What Capacity buys",
    ):
        assert heading in report
    assert "grain.local_sworker" in report and "trio echo" in report and "same server, minimal client" in report
    assert "one job at a time (MAX_CONCURRENT=1)" in report
    assert (tmp_path / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
