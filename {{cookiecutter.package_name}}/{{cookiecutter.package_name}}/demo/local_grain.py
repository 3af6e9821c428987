"""A real Grain on this machine: Gnaw and, for a server sworker, a worker process.

The demo and the end-to-end tests use it. The calling process is the head (it
runs ``grain.delayed.run`` with the config written here), everything binds to
loopback, and every process started here is ended here, by its pid: the worker
first (it tears its server down), then Gnaw. None outlives the calling process,
whatever signal ends it (see ``running_process``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from {{ "." if cookiecutter.backendless else ".." }}lifeline import Watchdog, die_with_parent, sigterm_as_sigint
from .watch import Watched, tail

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0
#: A worker leaves the head and tears its server down within this time.
WORKER_STOP_TIMEOUT = 15.0
#: Gnaw keeps no state worth waiting for, and lingers 5 s on SIGTERM.
GNAW_STOP_TIMEOUT = 0.5


class LocalGrainError(RuntimeError):
    """Gnaw or the worker failed to start; the message holds its output's tail."""


@dataclass(frozen=True)
class LocalGrain:
    """What the head needs: the config to pass to ``grain.delayed.run``; and what was started, with its log."""

    config_path: Path
    listen: str
    gnaw: Watched
    #: None for a backendless sworker (it runs in the head).
    worker: Watched | None

    @property
    def processes(self) -> tuple[Watched, ...]:
        """Everything started here, for a caller that watches it."""
        return (self.gnaw, self.worker) if self.worker else (self.gnaw,)

    @property
    def worker_pid(self) -> int | None:
        return self.worker.process.pid if self.worker else None


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def is_backendless(sworker: str) -> bool:
    """What Grain itself reads (as a truth value) to decide where the sworker runs."""
    config = importlib.import_module(sworker).GRAIN_SWORKER_CONFIG
    return bool(config.get("BACKENDLESS", False))


def render_config(listen: str, sworker: str, capacity: int, idle_quit: str) -> str:
    """A complete grain.toml for one head, Gnaw and one sworker type on loopback."""
    capacity_table = "{ V = " + str(int(capacity)) + " }"
    return (
        f"[head]\nlisten = {json.dumps(listen)}\n\n"
        f"[head.gnaw]\nenabled = true\nidle_quit = {json.dumps(idle_quit)}\n\n"
        f"[worker]\nspecialized_type = {json.dumps(sworker)}\ndial = {json.dumps(listen)}\n\n"
        f"[worker.res]\nCapacity = {capacity_table}\n"
    )


@contextmanager
def local_grain(
    sworker: str,
    *,
    capacity: int,
    idle_quit: str = "10s",
    env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
) -> Iterator[LocalGrain]:
    """Run Gnaw (and a worker unless the sworker is backendless) until the block ends.

    The config and the logs go to ``workdir``, which the caller keeps (e.g. when the run
    failed); without one, they go to a temporary folder removed on exit.
    """
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="grain-")))
        listen = f"tcp://{LOOPBACK}:{free_port()}"
        config_path = workdir / "grain.toml"
        config_path.write_text(render_config(listen, sworker, capacity, idle_quit))
        child_env = child_environment(sworker, env or {})

        gnaw = stack.enter_context(_gnaw(listen, idle_quit, workdir, child_env))
        worker = None
        if not is_backendless(sworker):
            worker = stack.enter_context(_worker(listen, sworker, capacity, workdir, child_env))
        yield LocalGrain(config_path, listen, gnaw, worker)


@contextmanager
def _gnaw(listen: str, idle_quit: str, workdir: Path, env: Mapping[str, str]) -> Iterator[Watched]:
    # The head attaches to a running Gnaw whose -wurl is its listen address, as
    # Grain's own start-up does; a short socket path keeps within the unix limit.
    socket_path = Path(tempfile.gettempdir()) / f"gnaw-{secrets.token_hex(6)}"
    command = [_gnaw_binary(), "-hurl", f"unix://{socket_path}", "-wurl", listen]
    command += ["-n", "8", "-t", idle_quit, "-swarm", "0"]
    log = workdir / "gnaw.log"
    with running_process(command, log, env, signal.SIGTERM, GNAW_STOP_TIMEOUT) as gnaw:
        try:
            wait_for(lambda: socket_path.exists(), gnaw, "Gnaw", log)
            yield Watched("Gnaw", gnaw, log)
        finally:
            socket_path.unlink(missing_ok=True)


@contextmanager
def _worker(listen: str, sworker: str, capacity: int, workdir: Path, env: Mapping[str, str]) -> Iterator[Watched]:
    # The command `grain up` renders for a server sworker.
    res = json.dumps({"Capacity": {"V": int(capacity)}})
    command = [sys.executable, "-m", "grain.worker", "--url", listen, "--res", res, "--sworker", sworker]
    # SIGINT makes the worker leave the head cleanly and cancel grain_run_sworker.
    # It runs in the work directory, as a batch job runs in its own: its server's log goes there.
    log = workdir / "worker.log"
    with running_process(command, log, env, signal.SIGINT, WORKER_STOP_TIMEOUT, cwd=workdir) as worker:
        yield Watched("the worker", worker, log)


@contextmanager
def running_process(
    command: list[str],
    log: Path,
    env: Mapping[str, str],
    stop_signal: signal.Signals = signal.SIGTERM,
    stop_timeout: float = 5.0,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in a session of its own, output to ``log``; stop it on exit.

    It never outlives this process: SIGTERM here runs the ``finally:`` that
    stops it, and if this process is killed outright the kernel (Linux) or a
    watchdog ends it (see ``lifeline``).
    """
    parent = os.getpid()

    def in_child() -> None:
        # A shell runs background jobs with SIGINT ignored, and children inherit that:
        # restore it, or the worker could not be asked to leave (and tear its server down).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        die_with_parent(parent)

    with sigterm_as_sigint():
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=in_child,
            )
        watchdog = None
        try:
            watchdog = Watchdog(process.pid, note=log)
            yield process
        finally:
            stop(process, stop_signal, stop_timeout)
            if watchdog is not None:
                watchdog.dismiss()


def stop(process: subprocess.Popen[bytes], stop_signal: signal.Signals, timeout: float) -> None:
    """Send ``stop_signal``, wait up to ``timeout`` s, then kill it and all it started, and reap it."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # anything it left in its session
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    for child in descendants:  # e.g. a server in a session of its own, if the stop signal was not obeyed
        try:
            child.kill()
        except psutil.Error:
            pass


def wait_for(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Poll ``ready`` with a short backoff; raise if the process exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.002
    while not ready():
        if process.poll() is not None:
            raise LocalGrainError(f"{what} exited with code {process.returncode}{_last_output(log)}")
        if time.monotonic() > deadline:
            raise LocalGrainError(f"{what} did not start within {START_TIMEOUT:g} s{_last_output(log)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _last_output(log: Path) -> str:
    text = tail(log)
    return f"; last output:\n{text}" if text else ""


def _gnaw_binary() -> str:
    """Gnaw ships in the grain-scheduler wheel, beside this interpreter."""
    beside = Path(sys.executable).with_name("gnaw")
    found = str(beside) if beside.exists() else shutil.which("gnaw")
    if not found:
        raise LocalGrainError("the 'gnaw' binary of grain-scheduler is not installed beside Python or on PATH")
    return found


def child_environment(module: str, extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, in which a child imports ``module`` as we do."""
    spec = importlib.util.find_spec(module.partition(".")[0])
    roots = []
    if spec and spec.origin:
        # A package's __init__.py sits one folder deeper than a top-level module file.
        roots.append(str(Path(spec.origin).parents[1 if spec.submodule_search_locations else 0]))
    pythonpath = os.pathsep.join([*roots, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, **extra, "PYTHONPATH": pythonpath}
