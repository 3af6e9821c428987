"""Running ``python -m {{ cookiecutter.package_name }}.demo`` as a user does, for the end-to-end tests.

A demo runs in a session of its own with its output in files, so a test can wait for a line
(e.g. the first result), disturb what the demo started (kill its server), and then time how
long the demo takes to end by itself. Whatever happens, the demo's session is killed on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from {{ cookiecutter.package_name }}.demo.run import RUN_MARK_ENV

PROJECT = Path(__file__).resolve().parents[1]
#: A demo that works ends well within this; past it, the test fails and the demo is killed.
DEMO_TIMEOUT = 120.0
#: How the demo says that Grain 0.17's head crashed (KeyError in remote_exer.py) as it dropped a
#: lost instance, instead of waiting for another: the other ending of a run whose last instance died.
GRAIN_RACE = "as it dropped the sworker instance"


@dataclass
class Demo:
    """One demo process; its stdout and stderr go to files in ``folder``."""

    process: subprocess.Popen[bytes]
    folder: Path
    started: float

    @property
    def stderr(self) -> str:
        return (self.folder / "stderr").read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return (self.folder / "stdout").read_text(errors="replace")

    def output(self) -> str:
        return self.stdout[-3000:] + self.stderr[-6000:]

    def wait_for_line(self, text: str, timeout: float) -> None:
        """Wait until the demo printed ``text`` (it must not exit before)."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            assert self.process.poll() is None, f"the demo exited with {self.process.returncode}\n{self.output()}"
            assert time.monotonic() < deadline, f"the demo did not print {text!r} within {timeout:g} s\n{self.output()}"
            time.sleep(0.05)

    def finish(self, timeout: float) -> tuple[int, float]:
        """The demo's exit code once it has ended by itself, and the seconds it ran."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not end by itself within {timeout:g} s\n{self.output()}") from None
        return code, time.monotonic() - self.started

    def summary(self) -> dict[str, Any]:
        """The ``--json`` line: the last line on stdout."""
        lines = self.stdout.strip().splitlines()
        assert lines, f"no output on stdout\n{self.output()}"
        loaded: dict[str, Any] = json.loads(lines[-1])
        return loaded


@contextmanager
def demo(folder: Path, *args: str, env: Mapping[str, str] | None = None, cwd: Path = PROJECT) -> Iterator[Demo]:
    """Start the demo with ``args``; on exit, its whole session is killed and reaped.

    Its temporary files, the logs a failed run keeps included, go to ``folder`` (``TMPDIR``).
    """
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}.demo", *args]
    environment = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    environment["TMPDIR"] = str(folder)
    with open(folder / "stdout", "wb") as stdout, open(folder / "stderr", "wb") as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env={**environment, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    try:
        yield Demo(process, folder, time.monotonic())
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def demo_summary(
    folder: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = DEMO_TIMEOUT
) -> dict[str, Any]:
    """Run the demo with ``args`` and ``--json`` to its end; its summary, once it has exited 0."""
    with demo(folder, *args, "--json", env=env) as run:
        code, _ = run.finish(timeout)
        assert code == 0, f"the demo exited with {code}\n{run.output()}"
        return run.summary()


def leftover_processes(pids: list[int], run_mark: str) -> list[str]:
    """Processes the demo started: by pid, or carrying its run's mark in their environment."""
    left = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            marked = process.environ().get(RUN_MARK_ENV) == run_mark
        except psutil.Error:
            marked = False
        if process.info["pid"] in pids or marked:
            left.append(f"{process.info['pid']}: {' '.join(process.info['cmdline'] or [])}")
    return left


def assert_failed_and_cleaned_up(run: Demo, summary: dict[str, Any]) -> None:
    """A failed run: non-zero, its logs kept and named, and nothing it started still running."""
    assert summary["ok"] is False
    logs = Path(summary["logs"])
    assert logs.is_dir() and f"logs kept in {logs}" in run.stderr
    assert leftover_processes(summary["pids"], summary["run_mark"]) == []
    shutil.rmtree(logs)
