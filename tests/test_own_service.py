"""Backendless: an author points the package at their own service by the README, and all ends green.

The stand-in service is copied outside the package under another name, with another base path
(``/api/v2``) and other error texts, so that no test can find it by its module name, its URL or
its words. Then, as the README's checklist says: ``demo/environment.py`` points at it (a local
stand-in started per run, or ``STAND_IN_COMMAND = None`` and the service from the environment),
the files the README's table marks ``delete`` are deleted, and the sworker imports, the demo gives
every result right, ruff and mypy are clean, and the generated suite (the kit included) passes with
``-W error``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import bake, replay_answers, run

SUITE_TIMEOUT = 400
DEMO_TIMEOUT = 120
#: A row of the README's file table: (its path, whose it is).
TABLE_ROW = re.compile(r"^\| `([^`]+)` \| ([^|]*) \|", re.M)


def baked_with_a_stand_in_elsewhere(tmp_path: Path) -> tuple[Path, str, Path, dict[str, str]]:
    """A fresh bake and its stand-in copied to ``elsewhere/my_api.py``, changed; the files marked delete deleted."""
    answers = replay_answers("backendless")
    package = answers["package_name"]
    project = bake(tmp_path / "bake", **answers)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    service = Path(shutil.copy(project / package / "demo" / "service.py", elsewhere / "my_api.py"))
    text = service.read_text()
    for old, new in [('BASE_PATH = "/v1"', 'BASE_PATH = "/api/v2"'), ("unauthenticated", "no such key")]:
        assert old in text
        text = text.replace(old, new)
    service.write_text(text.replace("square needs a number, got", "a number please, not"))
    readme = (project / "README.md").read_text()
    marked = [path for path, whose in TABLE_ROW.findall(readme) if "delete" in whose.lower()]
    assert sorted(marked) == sorted([f"{package}/demo/service.py", "tests/test_stand_in_service.py"]), marked
    for path in marked:
        (project / path).unlink()
    theirs = {path for path, whose in TABLE_ROW.findall(readme) if "yours" in whose.lower()}
    assert f"{package}/demo/environment.py" in theirs, "the README's table calls environment.py the author's"
    return project, package, service, answers


def point_at(project: Path, package: str, command: str, url: str) -> None:
    """Set ``STAND_IN_COMMAND`` and ``STAND_IN_URL`` in demo/environment.py, as the README says."""
    environment = project / package / "demo" / "environment.py"
    text = environment.read_text()
    assignment = re.compile(r"^STAND_IN_COMMAND: list\[str\] \| None = \[\n.*?^\]$", re.M | re.S)
    text, commands = assignment.subn(lambda _: command, text, count=1)
    text, urls = re.subn(r"^STAND_IN_URL = .*$", url, text, count=1, flags=re.M)
    assert commands == urls == 1, "environment.py no longer reads as the README says"
    environment.write_text(text)


def assert_all_green(project: Path, package: str, env: dict[str, str] | None = None) -> str:
    """The sworker imports, the demo is right, the checks are clean, the suite passes; its summary line."""
    imported = run([sys.executable, "-c", f"import {package}.the_sworker, {package}.probe"], project)
    assert imported.returncode == 0, imported.stderr[-3000:]
    for check in (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]):
        result = run(check, project)
        assert result.returncode == 0, result.stdout[-3000:]
    demo_command = [sys.executable, "-m", f"{package}.demo", "--tasks", "60", "--json"]
    demo = run(demo_command, project, timeout=DEMO_TIMEOUT, env=env)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert '"wrong": 0' in demo.stdout.splitlines()[-1], demo.stdout[-2000:]
    pytest = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider", "-rs"]
    suite = run(pytest, project, timeout=SUITE_TIMEOUT, env=env)
    assert suite.returncode == 0, suite.stdout[-6000:] + suite.stderr[-3000:]
    return suite.stdout


def test_a_local_stand_in_elsewhere_passes_as_the_authors(tmp_path: Path) -> None:
    project, package, service, _ = baked_with_a_stand_in_elsewhere(tmp_path)
    point_at(
        project,
        package,
        "STAND_IN_COMMAND: list[str] | None = [\n"
        f'    sys.executable,\n    "{service}",\n    "--port",\n    "{{port}}",\n]',
        'STAND_IN_URL = "http://127.0.0.1:{port}/api/v2"',
    )
    output = assert_all_green(project, package)
    assert "skipped" not in output.splitlines()[-1], output[-3000:]


@contextmanager
def running(service: Path, token_env: str, token: str) -> Iterator[int]:
    """The service on a free loopback port, as someone else would run it; its port. Killed and reaped on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(service), "--port", str(port)],
        env={**os.environ, token_env: token},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the service did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.kill()
        process.wait()


def test_the_service_from_the_environment_passes_without_a_stand_in(tmp_path: Path) -> None:
    project, package, service, answers = baked_with_a_stand_in_elsewhere(tmp_path)
    point_at(project, package, "STAND_IN_COMMAND: list[str] | None = None", 'STAND_IN_URL = ""')
    token = secrets.token_urlsafe(16)
    with running(service, answers["api_token_env"], token) as port:
        env = {answers["service_url_env"]: f"http://127.0.0.1:{port}/api/v2", answers["api_token_env"]: token}
        output = assert_all_green(project, package, env=env)
    # Only the tests that stop or kill the service need a stand-in of their own.
    skipped = re.findall(r"^SKIPPED \[\d+\] (\S+?):\d+: (.*)$", output, re.M)
    assert {name for name, _ in skipped} == {"tests/test_client.py", "tests/test_demo_faults.py"}, output[-3000:]
