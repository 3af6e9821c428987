"""End-to-end: the package on a real Grain (head, Gnaw and, for a server sworker, a worker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from demo_support import PROJECT, demo_summary, leftover_processes
from grain.config import load_conf

from {{ cookiecutter.package_name }} import DEFAULT_CAPACITY
from {{ cookiecutter.package_name }}.demo.cluster import ClusterConfig
from {{ cookiecutter.package_name }}.demo.local_grain import is_backendless

pytestmark = pytest.mark.real_grain

SWORKER = "{{ cookiecutter.package_name }}.the_sworker"


def test_grain_toml_loads_with_grains_own_loader() -> None:
    config = load_conf(str(PROJECT / "grain.toml"))
    assert config.worker.specialized_type == SWORKER
    assert config.worker.res == {"Capacity": {"V": DEFAULT_CAPACITY}}
    assert config.head.gnaw.enabled
    assert config.head.listen == config.worker.dial


def test_demo_runs_tasklets_on_real_grain_and_leaves_nothing_running(tmp_path: Path) -> None:
    summary = demo_summary(tmp_path, "--tasks", "40")
    assert summary["tasks"] == 40
    assert summary["wrong"] == 0
    expected_processes = 1 if is_backendless(SWORKER) else 2  # Gnaw, and a worker for a server sworker
    assert len(summary["pids"]) == expected_processes
    assert leftover_processes(summary["pids"], summary["run_mark"]) == []


def test_demo_at_capacity_one(tmp_path: Path) -> None:
    summary = demo_summary(tmp_path, "--tasks", "10", "--capacity", "1")
    assert summary["tasks"] == 10 and summary["wrong"] == 0


def grain_up_dry(config: str) -> subprocess.CompletedProcess[str]:
    """What Grain's own ``grain up --dry`` prints for the project's ``config``; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "grain.cli", "up", "--dry", "-c", str(PROJECT / config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_grain_up_renders_what_the_variant_needs() -> None:
    result = grain_up_dry("grain.toml")
    if is_backendless(SWORKER):
        assert "don't need to run a worker" in result.stderr
    else:
        assert "python -m grain.worker --url 'tcp://127.0.0.1:4242'" in result.stdout
        assert f"--sworker '{SWORKER}'" in result.stdout
        assert '"Capacity": {"V": ' + str(DEFAULT_CAPACITY) + "}" in result.stdout


def test_grain_cluster_toml_loads_and_grain_up_renders_what_the_variant_needs() -> None:
    config = ClusterConfig.load(PROJECT / "grain.cluster.toml")
    assert config.worker.specialized_type == SWORKER
    assert config.head.gnaw.enabled and config.head.listen == config.worker.dial
    result = grain_up_dry("grain.cluster.toml")
    if is_backendless(SWORKER):
        assert "don't need to run a worker" in result.stderr
        assert not config.worker.script.cores, "cores would give the head's instance Node resources"
        return
    assert config.system == "slurm" and config.worker.script.cores >= 1
    countdown = config.countdown_seconds()
    assert countdown is not None and countdown > 3600, "a walltime well over 3 minutes"
    script = result.stdout
    assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH -o grain-worker-%j.log" in script
    assert 'export {{ cookiecutter.package_name | upper }}_HOST="$(hostname -I' in script
    # The hazard the README explains: with cores, the instance also carries Node (and a countdown).
    assert '"Node": {"N": 1' in script and '"WTime": {"T": "03:57:00", "countdown": true}' in script
    assert f"--sworker '{SWORKER}'" in script
