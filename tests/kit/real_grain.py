"""A real Grain on loopback for the proofs: Gnaw, workers and heads, each ended by its pid.

Reuses the generated package's harness (``local_grain.py``, Jinja-free, wherever it sits) for Gnaw
and ``python -m grain.worker``; heads run ``grain_head.py`` in a session of
their own and are killed (whole group) when they do not finish in time, which
is how a hang is told apart from an exit. Every process of a proof carries a
tag in its environment (and the echo server on its command line), so a test can
find what a broken module left behind, end it, and then assert nothing is left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .conftest import TEMPLATE

#: Found by name, wherever the package keeps its harness.
_HARNESS = next((TEMPLATE / "{{cookiecutter.package_name}}" / "{{cookiecutter.package_name}}").rglob("local_grain.py"))
_spec = importlib.util.spec_from_file_location("kit_local_grain", _HARNESS)
assert _spec and _spec.loader
local_grain = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = local_grain  # dataclasses look their module up there
_spec.loader.exec_module(local_grain)

HEAD_SCRIPT = Path(__file__).with_name("grain_head.py")
TAG_ENV = "KIT_RUN_TAG"


@dataclass
class HeadRun:
    status: str  # "exit" or "hang" (killed after the time limit)
    returncode: int | None
    output: str
    seconds: float

    @property
    def report(self) -> dict[str, object] | None:
        for line in self.output.splitlines():
            if line.startswith("REPORT "):
                loaded: dict[str, object] = json.loads(line[7:])
                return loaded
        return None


@dataclass
class Grain:
    """One Gnaw on loopback (and the workers added to it) for one proof."""

    sworker: str
    workdir: Path
    listen: str
    env: dict[str, str]
    tag: str
    stack: ExitStack
    config: Path = field(init=False)
    pids: list[int] = field(default_factory=list)

    def write_config(self, capacity: int = 4, extra: str = "") -> Path:
        self.config = self.workdir / "grain.toml"
        text = local_grain.render_config(self.listen, self.sworker, capacity, "10s")
        if extra:  # e.g. "[worker.script]\nmemory = 4\n", or more [worker.res] lines
            text += extra
        self.config.write_text(text)
        return self.config

    def add_worker(self, capacity: int = 4, name: str = "worker") -> subprocess.Popen[bytes]:
        folder = self.workdir / name
        folder.mkdir()
        worker = self.stack.enter_context(local_grain._worker(self.listen, self.sworker, capacity, folder, self.env))
        self.pids.append(worker.pid)
        return worker

    def log(self, name: str) -> str:
        return (self.workdir / name).read_text(errors="replace")

    def head(
        self, scenario: str = "calls", *, tasks: int = 4, limit: float = 6.0, env: Mapping[str, str] = ()
    ) -> HeadRun:
        """Run a head; "hang" if it has not exited within ``limit`` seconds (then its group is killed)."""
        command = [sys.executable, str(HEAD_SCRIPT), "--config", str(self.config), "--scenario", scenario]
        command += ["--tasks", str(tasks)]
        started = time.monotonic()
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**self.env, **dict(env)},
                cwd=self.workdir,
                start_new_session=True,
            )
            try:
                process.wait(limit)
                status = "exit"
            except subprocess.TimeoutExpired:
                status = "hang"
            finally:
                _kill_group(process.pid)
                process.wait()
            seconds = time.monotonic() - started
            output.seek(0)
            text = output.read().decode(errors="replace")
        return HeadRun(status, process.returncode if status == "exit" else None, text, seconds)


@contextmanager
def real_grain(sworker: str, env: Mapping[str, str] | None = None) -> Iterator[Grain]:
    """Gnaw on a free loopback port; on exit, workers then Gnaw are stopped and reaped."""
    tag = f"kitproof-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="kitproof-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        listen = f"tcp://127.0.0.1:{local_grain.free_port()}"
        child_env = {**os.environ, **(env or {}), TAG_ENV: tag, "PYTHONPATH": str(TEMPLATE)}
        child_env.pop("PYTEST_ADDOPTS", None)
        grain = Grain(sworker, workdir, listen, child_env, tag, stack)
        gnaw = stack.enter_context(local_grain._gnaw(listen, "10s", workdir, child_env))
        grain.pids.append(gnaw.pid)
        grain.write_config()
        yield grain


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes of one proof: the tag in their environment or on their command line."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE or process.pid == os.getpid():
                continue
            if tag in " ".join(process.info["cmdline"] or []) or process.environ().get(TAG_ENV) == tag:
                found.append(process)
        except psutil.Error:
            pass
    return found


def kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=5)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
