"""The demo never waits silently, and the smoke run works with the cluster config (real Grain).

Grain would wait forever when the service goes away: each tasklet fails, three failures drop the
instance, and nothing is left to run the rest. The demo watches the head's instances and ends
within seconds, naming the service. The smoke run (``--config``) runs the head alone here: a
backendless sworker needs no worker job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from demo_support import GRAIN_RACE, PROJECT, assert_failed_and_cleaned_up, demo

from {{ cookiecutter.package_name }}.client import URL_ENV
from {{ cookiecutter.package_name }}.demo import environment
from {{ cookiecutter.package_name }}.demo.cluster import gnaws_listening_on
from {{ cookiecutter.package_name }}.demo.environment import local_service
from {{ cookiecutter.package_name }}.demo.local_grain import free_port

pytestmark = pytest.mark.real_grain

LOST_INSTANCE_LIMIT = 60.0
SMOKE_RUN_LIMIT = 60.0
INSTANCE = "{{ cookiecutter.package_name }}"
#: How ``demo/environment.py`` names the local stand-in it started.
STAND_IN_PID = re.compile(r"local stand-in service: pid (\d+)")


@pytest.mark.skipif(environment.STAND_IN_COMMAND is None, reason="needs a local stand-in to kill")
def test_a_service_killed_mid_run_ends_the_demo_naming_it(tmp_path: Path) -> None:
    # About 10 s of tasklets at capacity 4 (each holds its slot 20 ms): the kill lands mid-batch.
    with demo(tmp_path, "--tasks", "2000", "--pause", "0.02", "--json") as run:
        run.wait_for_line("first result after", timeout=60)
        found = STAND_IN_PID.search(run.stderr)
        assert found, run.output()
        service = psutil.Process(int(found[1]))
        assert service.ppid() == run.process.pid, "the stand-in is the demo's child"
        service.kill()
        code, _ = run.finish(LOST_INSTANCE_LIMIT)
        summary = run.summary()
    assert code == 1, run.output()
    # The watch sees the instance go. The head does not crash as it drops it (GRAIN_RACE, Grain 0.17's
    # KeyError): the package's grain_compat keeps it running.
    assert "lost its last sworker instance" in summary["error"] and GRAIN_RACE not in summary["error"], run.output()
    assert URL_ENV in run.stderr, run.output()  # the error names where the service was to be
    assert 0 < summary["tasks"] < 2000
    assert_failed_and_cleaned_up(run, summary)


@pytest.fixture
def cluster_config(tmp_path: Path) -> Iterator[Path]:
    """grain.cluster.toml as a user adapts it, here: the head on a free loopback port."""
    listen = f"tcp://127.0.0.1:{free_port()}"
    text = re.sub(r"tcp://head-node:\d+", listen, (PROJECT / "grain.cluster.toml").read_text())
    config = tmp_path / "grain.cluster.toml"
    config.write_text(text)
    yield config
    assert gnaws_listening_on(listen) == set(), "the smoke run left its Gnaw running"


def test_the_smoke_run_with_the_cluster_config_runs_the_head_alone(tmp_path: Path, cluster_config: Path) -> None:
    with (
        local_service() as service_env,
        demo(
            tmp_path, "--config", str(cluster_config), "--workers", "0", "--tasks", "200", "--json", env=service_env
        ) as run,
    ):
        code, _ = run.finish(SMOKE_RUN_LIMIT)
        summary = run.summary()
    assert code == 0, run.output()
    assert summary["tasks"] == 200 and summary["wrong"] == 0
    assert summary["instances"] == [INSTANCE] and summary["workers"] == 0
    assert summary["jobs"] == [] and "grain up" not in run.stderr
    assert summary["first_result_seconds"] <= summary["last_result_seconds"] < summary["seconds"]


def test_the_smoke_run_without_the_service_settings_says_which_is_missing(tmp_path: Path, cluster_config: Path) -> None:
    with demo(tmp_path, "--config", str(cluster_config), "--json", env={URL_ENV: ""}) as run:
        code, _ = run.finish(SMOKE_RUN_LIMIT)
        summary = run.summary()
    assert code == 1, run.output()
    assert f"set the environment variable {URL_ENV}" in summary["error"], run.output()
