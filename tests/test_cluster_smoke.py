"""The generated package's cluster smoke run on a real Slurm cluster, as a user runs it.

``python -m PKG.demo --config grain.cluster.toml --workers N`` from a folder of its own, with the
package's ``grain.cluster.toml`` adapted as its comments say (the head's address, the partition,
the environment line, the node size of ``tests/slurm_cluster.py``). The demo is the head; Grain's
own ``grain up`` submits the workers. Each test checks what the run printed and that nothing is
left anywhere after: no job in ``squeue``, nothing but slurmd on a node, no process of the package.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netns
import psutil
import pytest
from conftest import bake, replay_answers, require_slurm_cluster
from slurm_cluster import SlurmCluster

require_slurm_cluster()

#: The server variant under a name of its own (random: a concurrent run's processes are not ours).
PACKAGE = f"smoke_{secrets.token_hex(3)}"
PREFIX = PACKAGE.upper()
ANSWERS = {
    **replay_answers("server"),
    "project_name": "Smoke",
    "package_name": PACKAGE,
    "service_url_env": f"{PREFIX}_URL",
    "api_token_env": f"{PREFIX}_TOKEN",
}
#: The demo ends by itself within these (its own waits are shorter); then it is killed and the test fails.
RUN_LIMIT = 120.0
#: What a node may still run a moment after its job ended, and for how long.
SETTLE_SECONDS = 10.0


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("smoke"), **ANSWERS)


def adapted_config(project: Path, cluster: SlurmCluster, folder: Path, *, walltime: str, setup: str = "") -> Path:
    """The package's grain.cluster.toml with what its comments ask a user to replace, replaced."""
    listen = f"{cluster.controller}:{netns.free_port(cluster.controller)}"
    replace = {
        "head-node:4242": listen,
        'queue = "your-partition"': f'queue = "{cluster.partition}"',
        "cores = 1\n": "cores = 2\n",  # a whole node (2 CPUs) per job: one worker per node
        "memory = 4 ": "memory = 1 ",  # the test nodes have 2 GB
        'walltime = "04:00:00"': f'walltime = "{walltime}"',
        f'source "$HOME/venvs/{PACKAGE}/bin/activate"': f'source "{sys.prefix}/bin/activate"{setup}',
    }
    text = (project / "grain.cluster.toml").read_text()
    for old, new in replace.items():
        assert old in text, f"grain.cluster.toml no longer has {old!r}"
        text = text.replace(old, new)
    config = folder / "grain.cluster.toml"
    config.write_text(text)
    return config


@dataclass
class SmokeRun:
    process: subprocess.Popen[bytes]
    folder: Path
    started: float

    @property
    def stderr(self) -> str:
        return (self.folder / "stderr").read_text(errors="replace")

    def output(self) -> str:
        return (self.folder / "stdout").read_text(errors="replace")[-2000:] + self.stderr[-6000:]

    def wait_for_line(self, text: str, timeout: float) -> None:
        what = f"the demo to print {text!r}"
        netns.wait_until(lambda: text in self.stderr, timeout, what, {"the demo": self.process}, self.output)

    def finish(self) -> tuple[int, float, dict[str, Any]]:
        """Exit code, seconds since the start, and the ``--json`` line, once the demo ended by itself."""
        try:
            code = self.process.wait(RUN_LIMIT - (time.monotonic() - self.started))
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the smoke run did not end by itself within {RUN_LIMIT:g} s\n{self.output()}"
            ) from None
        lines = (self.folder / "stdout").read_text().strip().splitlines()
        assert lines, self.output()
        return code, time.monotonic() - self.started, json.loads(lines[-1])


@contextmanager
def smoke_run(project: Path, folder: Path, config: Path, *args: str) -> Iterator[SmokeRun]:
    """``python -m PKG.demo --config CONFIG --json ARGS`` in ``folder``; on exit, SIGINT (it cancels
    its jobs) if it still runs, then SIGKILL."""
    command = [sys.executable, "-m", f"{PACKAGE}.demo", "--config", str(config), "--json", *args]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = str(project)  # the jobs inherit it (sbatch exports the environment)
    env[f"{PREFIX}_INSTANCE_KEY_FILE"] = str(folder / "instance.key")  # the head's and the jobs' key, kept here
    stdout, stderr = folder / "stdout", folder / "stderr"
    with netns.started(None, command, stdout, env, signal.SIGINT, 60, cwd=folder, stderr_log=stderr) as process:
        yield SmokeRun(process, folder, time.monotonic())


def package_processes() -> list[str]:
    """Every live process on this machine with the package's name in its command line or environment."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            text = " ".join(process.info["cmdline"] or []) + " ".join(process.environ().values())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if PACKAGE in text:
            found.append(f"{process.pid}: {' '.join(process.info['cmdline'] or [])}")
    return found


def assert_nothing_left(cluster: SlurmCluster) -> None:
    """No job queued, nothing but slurmd on any node, no process of the package, within a few seconds."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        left: dict[str, object] = {"squeue": cluster.jobs(), "package": package_processes()}
        for node in cluster.nodes:
            left[node.name] = {pid: name for pid, name in cluster.processes_on(node).items() if name != "slurmd"}
        if not any(left.values()):
            return
        assert time.monotonic() < deadline, f"left {SETTLE_SECONDS:g} s after the run: {left}"
        time.sleep(0.2)


def test_the_smoke_run_runs_400_tasklets_on_two_nodes_and_leaves_nothing(
    slurm_cluster: SlurmCluster, project: Path, tmp_path: Path
) -> None:
    config = adapted_config(project, slurm_cluster, tmp_path, walltime="00:10:00")
    with smoke_run(project, tmp_path, config, "--workers", "2", "--tasks", "400") as run:
        code, seconds, summary = run.finish()
    assert code == 0, run.output()
    assert summary["tasks"] == 400 and summary["wrong"] == 0 and summary["ok"], summary
    # One instance per node, each the server at its node's address (it can only listen there).
    hosts = sorted(name.split("@")[1].rsplit(":", 1)[0] for name in summary["instances"])
    assert hosts == sorted(node.address for node in slurm_cluster.nodes), summary["instances"]
    assert sum(summary["per_instance"].values()) == 400 and len(summary["jobs"]) == 2
    assert 0 <= summary["first_result_seconds"] <= summary["last_result_seconds"] < seconds
    assert "the workers left the head" in run.stderr and f"job(s) {', '.join(summary['jobs'])} ended" in run.stderr
    for log in tmp_path.glob("grain-worker-*.log"):
        assert "Traceback" not in log.read_text(), log.read_text()
    assert_nothing_left(slurm_cluster)
    print(f"smoke run: {seconds:.1f} s in all, instances joined after {summary['joined_seconds']:.1f} s")


def test_a_job_cancelled_mid_run_ends_the_run_by_itself(
    slurm_cluster: SlurmCluster, project: Path, tmp_path: Path
) -> None:
    config = adapted_config(project, slurm_cluster, tmp_path, walltime="00:10:00")
    # 400 tasklets holding their slot 50 ms, 8 at a time: about 2.5 s on two instances.
    with smoke_run(project, tmp_path, config, "--workers", "2", "--tasks", "400", "--pause", "0.05") as run:
        run.wait_for_line("first result after", timeout=RUN_LIMIT)
        [victim] = [job for job, node in slurm_cluster.job_nodes().items() if node == slurm_cluster.nodes[0].name]
        slurm_cluster.command("scancel", victim)
        cancelled = time.monotonic()
        code, _, summary = run.finish()
        ended_after = time.monotonic() - cancelled
    # The other instance finishes the batch (Grain 0.17.1's own head would at times crash with
    # KeyError here: the package's grain_compat keeps it running; issue 20).
    assert code == 0, run.output()
    assert summary["tasks"] == 400 and summary["wrong"] == 0, summary
    assert_nothing_left(slurm_cluster)
    print(f"scancel mid-run: the run ended {ended_after:.1f} s later, exit code {code}")


def test_the_walltime_countdown_ends_the_worker_and_the_run_says_so(
    slurm_cluster: SlurmCluster, project: Path, tmp_path: Path
) -> None:
    # Grain's countdown is the walltime minus 3 minutes, seconds kept: 00:03:10 gives 10 s, which
    # is what a 4-hour job's last minutes look like, without waiting for them.
    config = adapted_config(project, slurm_cluster, tmp_path, walltime="00:03:10")
    # 400 tasklets holding their slot 0.2 s, 4 at a time: 20 s, twice the countdown.
    with smoke_run(project, tmp_path, config, "--workers", "1", "--tasks", "400", "--pause", "0.2") as run:
        run.wait_for_line("first result after", timeout=RUN_LIMIT)
        first_result = time.monotonic()
        code, _, summary = run.finish()
        ended_after = time.monotonic() - first_result
    assert code == 1, run.output()
    assert "lost its last sworker instance" in summary["error"] and 0 < summary["tasks"] < 400, summary
    assert "the workers leave 10 s after they start" in run.stderr
    [log] = tmp_path.glob("grain-worker-*.log")
    assert "interrupted by TooSlowError, notify head" in log.read_text()  # the countdown, not a crash
    assert "interrupted by TooSlowError" in run.stderr  # the log's tail in the report
    assert ended_after < 10 + 10, run.output()
    assert_nothing_left(slurm_cluster)  # the worker reaped its server on the way out
    print(f"walltime countdown: the run ended {ended_after:.1f} s after the first result")


def test_a_worker_that_crashes_at_start_ends_the_run_with_its_log(
    slurm_cluster: SlurmCluster, project: Path, tmp_path: Path
) -> None:
    setup = f"\nexport {PREFIX}_STARTUP_TIMEOUT=abc"
    config = adapted_config(project, slurm_cluster, tmp_path, walltime="00:10:00", setup=setup)
    with smoke_run(project, tmp_path, config, "--workers", "1") as run:
        code, seconds, summary = run.finish()
    assert code == 1, run.output()
    assert "a worker crashed before its instance joined the head" in summary["error"], summary
    assert f"{PREFIX}_STARTUP_TIMEOUT='abc' is not a number of seconds" in run.stderr
    assert seconds < 60, run.output()
    assert_nothing_left(slurm_cluster)
    print(f"worker crash at start: reported after {seconds:.1f} s")
