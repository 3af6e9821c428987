"""The demo never waits silently: what breaks on the worker side ends it with the reason (real Grain).

Grain would wait forever here: a worker that crashes at start never registers, and an instance
whose server died is dropped after three failed tasklets with nothing left to run them. The demo
watches its worker and the head's instances, and ends within seconds, naming what went wrong,
with the worker's log and its logs kept.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from demo_support import GRAIN_RACE, PROJECT, assert_failed_and_cleaned_up, demo
from server_support import running_servers

from {{ cookiecutter.package_name }}.client_support import ServerGoneError
from {{ cookiecutter.package_name }}.demo.cluster import ClusterConfig, config_problems, worker_log_pattern
from {{ cookiecutter.package_name }}.demo.local_grain import free_port
from {{ cookiecutter.package_name }}.the_sworker import DEFAULT_STARTUP_TIMEOUT, HOST_ENV

SWORKER = "{{ cookiecutter.package_name }}.the_sworker"

#: The issue's bound for a start-up error to show: the start-up timeout plus 10 s.
STARTUP_REPORT_LIMIT = 45.0
LOST_INSTANCE_LIMIT = 60.0


@pytest.mark.real_grain
def test_a_start_up_error_on_the_worker_ends_the_demo_naming_it(tmp_path: Path) -> None:
    """Here the worker cannot listen on the address it is given; any error of grain_run_sworker's goes the same way."""
    assert STARTUP_REPORT_LIMIT <= DEFAULT_STARTUP_TIMEOUT + 10
    with demo(tmp_path, "--json", env={HOST_ENV: "256.1.1.1"}) as run:
        code, seconds = run.finish(STARTUP_REPORT_LIMIT)
        summary = run.summary()
    assert code == 1, run.output()
    # The headline, not only the log's tail.
    assert f"cannot listen on '256.1.1.1' (from {HOST_ENV})" in summary["error"], run.output()
    assert "the worker" in summary["error"] and "no instance had joined the head" in summary["error"]
    assert seconds < STARTUP_REPORT_LIMIT
    assert_failed_and_cleaned_up(run, summary)


@pytest.mark.real_grain
def test_a_server_killed_mid_run_ends_the_demo_naming_it(tmp_path: Path, server_log_dir: Path) -> None:
    # About 10 s of tasklets at capacity 4 (each holds its slot 20 ms): the kill lands mid-batch.
    with demo(tmp_path, "--tasks", "2000", "--pause", "0.02", "--json") as run:
        run.wait_for_line("first result after", timeout=60)
        ((address, server),) = running_servers(server_log_dir).items()  # the one SERVER_COMMAND started
        server.kill()
        code, _ = run.finish(LOST_INSTANCE_LIMIT)
        summary = run.summary()
    assert code == 1, run.output()
    # The watch sees the instance go. The head does not crash as it drops it (GRAIN_RACE, Grain 0.17's
    # KeyError): the package's grain_compat keeps it running.
    assert "lost its last sworker instance" in summary["error"] and GRAIN_RACE not in summary["error"], run.output()
    assert address in summary["error"], run.output()  # the instance: the server's address
    assert f"the last: {ServerGoneError.__name__}: " in run.stderr, run.output()  # the tasklets' error
    assert 0 < summary["tasks"] < 2000
    assert_failed_and_cleaned_up(run, summary)


def test_the_smoke_run_refuses_a_config_that_cannot_work_before_starting_anything(tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text((PROJECT / "grain.toml").read_text())  # no system: grain up would run workers here
    with demo(tmp_path, "--config", str(local), "--workers", "1", "--json") as run:
        code, _ = run.finish(60)
    assert code == 2, run.output()
    assert "[worker] system = '': grain up would run each worker here" in run.stderr
    with demo(tmp_path, "--config", str(PROJECT / "grain.cluster.toml"), "--workers", "0") as run:
        code, _ = run.finish(60)
    assert code == 2, run.output()
    assert "a server sworker needs workers: --workers N" in run.stderr


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        pytest.param(("", ""), None, id="as-shipped"),
        pytest.param(('walltime = "04:00:00"', 'walltime = "00:03:00"'), "is not over 3 minutes", id="walltime"),
        pytest.param(('system = "slurm"', 'system = ""'), "grain up would run each worker here", id="system"),
        pytest.param(('queue = "your-partition"', "queue = \"''\""), "queue is not set", id="queue"),
        pytest.param(("cores = 1", "cores = 0"), "cores is required by slurm", id="cores"),
        pytest.param(("{{ cookiecutter.package_name }}.the_sworker", "other.the_sworker"), "specialized_type", id="type"),
    ],
)
def test_the_smoke_run_checks_the_cluster_config_for_the_known_hazards(
    tmp_path: Path, edit: tuple[str, str], problem: str | None
) -> None:
    text = (PROJECT / "grain.cluster.toml").read_text()
    text = text.replace("head-node", "127.0.0.1").replace("4242", str(free_port()))  # this machine can listen
    assert edit[0] in text
    (tmp_path / "grain.cluster.toml").write_text(text.replace(*edit))
    problems = config_problems(ClusterConfig.load(tmp_path / "grain.cluster.toml"), SWORKER, 2, backendless=False)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in said for said in problems), problems


def test_the_worker_logs_are_found_from_log_file(tmp_path: Path) -> None:
    # Grain's default log_file, w + HHMMSS in double braces + .log (Grain puts in the time of
    # submission); spelled out piecewise because this file is itself a template.
    grains_default = "w" + "{" * 2 + "HHMMSS" + "}" * 2 + ".log"
    assert worker_log_pattern(grains_default, tmp_path) == str(tmp_path / "w*.log")
    assert worker_log_pattern("logs/%x-%j.out", tmp_path) == str(tmp_path / "logs/*-*.out")  # Slurm's codes
    assert worker_log_pattern("/scratch/[run] 100%%.log", tmp_path) == "/scratch/[[]run] 100%.log"
