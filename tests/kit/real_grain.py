"""A real Grain on loopback for the proofs: Gnaw, workers and heads, each ended by its pid.

Gnaw (the binary in the grain-scheduler wheel) and ``python -m grain.worker``
run as ``grain up`` renders them, started here: the proofs depend on Grain only,
not on the generated package's harness. Heads run ``grain_head.py`` in a session of
their own and are killed (whole group) when they do not finish in time, which
is how a hang is told apart from an exit. Every process of a proof carries a
tag in its environment (and the echo server on its command line), so a test can
find what a broken module left behind, end it, and then assert nothing is left.
"""

from __future__ import annotations

import contextlib
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
from netns import free_port, started, wait_until

from .conftest import TEMPLATE

HEAD_SCRIPT = Path(__file__).with_name("grain_head.py")
TAG_ENV = "KIT_RUN_TAG"
HANDSHAKE_RACE = 'assert hsmsg["cmd"] == "hsAck"'
START_TIMEOUT = 20.0
#: A worker leaves the head and tears its server down within this time.
WORKER_STOP_TIMEOUT = 15.0
#: Gnaw keeps no state a proof needs, and lingers 5 s on SIGTERM: it is killed at once.
GNAW_STOP_TIMEOUT = 5.0


def render_config(listen: str, sworker: str, capacity: int, idle_quit: str) -> str:
    """A complete grain.toml for one head, Gnaw and one sworker type on loopback."""
    return (
        f"[head]\nlisten = {json.dumps(listen)}\n\n"
        f"[head.gnaw]\nenabled = true\nidle_quit = {json.dumps(idle_quit)}\n\n"
        f"[worker]\nspecialized_type = {json.dumps(sworker)}\ndial = {json.dumps(listen)}\n\n"
        f"[worker.res]\nCapacity = {{ V = {int(capacity)} }}\n"
    )


@contextmanager
def gnaw(listen: str, idle_quit: str, workdir: Path, env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Gnaw, which the head attaches to (its -wurl is the head's listen address, as Grain starts it)."""
    socket_path = Path(tempfile.gettempdir()) / f"gnaw-{secrets.token_hex(6)}"
    binary = Path(sys.executable).with_name("gnaw")
    command = [str(binary) if binary.exists() else "gnaw", "-hurl", f"unix://{socket_path}", "-wurl", listen]
    command += ["-n", "8", "-t", idle_quit, "-swarm", "0"]
    with started(None, command, workdir / "gnaw.log", env, signal.SIGKILL, GNAW_STOP_TIMEOUT) as process:
        try:
            what = f"Gnaw to start (its socket {socket_path})"
            wait_until(socket_path.exists, START_TIMEOUT, what, {"Gnaw": process}, workdir, interval=0.01)
            yield process
        finally:
            socket_path.unlink(missing_ok=True)


def worker(
    listen: str, sworker: str, capacity: int, workdir: Path, env: Mapping[str, str]
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """``python -m grain.worker`` as ``grain up`` renders it; SIGINT makes it leave and cancel its sworker."""
    res = json.dumps({"Capacity": {"V": int(capacity)}})
    command = [sys.executable, "-m", "grain.worker", "--url", listen, "--res", res, "--sworker", sworker]
    return started(None, command, workdir / "worker.log", env, signal.SIGINT, WORKER_STOP_TIMEOUT)


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
        text = render_config(self.listen, self.sworker, capacity, "10s")
        if extra:  # e.g. "[worker.script]\nmemory = 4\n", or more [worker.res] lines
            text += extra
        self.config.write_text(text)
        return self.config

    def add_worker(self, capacity: int = 4, name: str = "worker") -> subprocess.Popen[bytes]:
        folder = self.workdir / name
        folder.mkdir()
        process = self.stack.enter_context(worker(self.listen, self.sworker, capacity, folder, self.env))
        self.pids.append(process.pid)
        return process

    def log(self, name: str) -> str:
        return (self.workdir / name).read_text(errors="replace")

    def head(
        self, scenario: str = "calls", *, tasks: int = 4, limit: float = 6.0, env: Mapping[str, str] = ()
    ) -> HeadRun:
        """Run a head; "hang" if it has not exited within ``limit`` seconds (then its group is killed).

        Grain 0.17.1 has a start-up race of its own: a backendless head's sworker registration can
        reach its side channel before Gnaw's handshake answer (``assert hsmsg["cmd"] == "hsAck"``),
        before any tasklet runs. Such a head is run once more: it says nothing about the module.
        """
        run = self._head(scenario, tasks, limit, env)
        if run.status == "exit" and HANDSHAKE_RACE in run.output:
            run = self._head(scenario, tasks, limit, env)
        return run

    def _head(self, scenario: str, tasks: int, limit: float, env: Mapping[str, str]) -> HeadRun:
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
        listen = f"tcp://127.0.0.1:{free_port()}"
        child_env = {**os.environ, **(env or {}), TAG_ENV: tag, "PYTHONPATH": str(TEMPLATE)}
        child_env.pop("PYTEST_ADDOPTS", None)
        grain = Grain(sworker, workdir, listen, child_env, tag, stack)
        grain.pids.append(stack.enter_context(gnaw(listen, "10s", workdir, child_env)).pid)
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
