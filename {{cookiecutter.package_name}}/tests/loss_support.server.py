"""Two sworker instances on a real local Grain, a head in a process of its own, and one instance lost.

The tests of ``test_instance_loss.py`` and ``test_strangers.py`` use it, and so does the measurement
it runs as a script (``PYTHONPATH=. python tests/loss_support.py measure --runs 20``): Gnaw and two
``python -m grain.worker`` processes (as ``grain up`` renders them), a head that runs a batch of
tasklets (``python tests/loss_support.py head``: a crash ends only that process), and, once
results flow, one instance lost by one of ``CAUSES``. Everything started is ended by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from server_support import running_servers

from {{ cookiecutter.package_name }} import probe
from {{ cookiecutter.package_name }}.demo.environment import local_service
from {{ cookiecutter.package_name }}.demo.local_grain import (
    WORKER_STOP_TIMEOUT,
    _gnaw,
    child_environment,
    free_port,
    render_config,
    running_process,
)
from {{ cookiecutter.package_name }}.grain_compat import DISABLE_ENV
from {{ cookiecutter.package_name }}.the_sworker import LOG_DIR_ENV

SWORKER = "{{ cookiecutter.package_name }}.the_sworker"
PROJECT = Path(__file__).resolve().parents[1]
CAPACITY = 4
#: How an instance is lost: ``grain quit`` of its worker (Grain's graceful leave), ``grain quit
#: --force``, the job's end by scancel (SIGTERM to every process of the job: worker and server),
#: SIGKILL of the worker (its server dies with it), the server killed alone, and the worker's
#: walltime countdown (it leaves by itself).
CAUSES = ("quit", "quit-force", "scancel", "sigkill", "server", "walltime")
#: The walltime countdown of the instance lost by ``walltime``, from its worker's start; the head
#: starts ``WALLTIME_LEAD`` s before it ends, with a batch that outlasts it.
COUNTDOWN_SECONDS = 5
WALLTIME_LEAD = 2.0
WALLTIME_TASKS = 8000
#: The head's batch, at full speed (as the cluster measurement that found the crash): the loss
#: lands mid-batch with many tasklets on their way, which is when Grain's head crashed.
TASKS = 3000
PAUSE = 0.0
#: The loss comes once this many results are in.
LOSE_AFTER = 300
HEAD_TIMEOUT = 90.0
#: The head prints this, with the count, as results come in.
PROGRESS = "results in:"


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    #: Where its server logs, and so where its pid file is (``server_support.running_servers``).
    server_logs: Path
    started: float = field(default_factory=time.monotonic)

    def server(self) -> psutil.Process | None:
        """The server ``SERVER_COMMAND`` started for this worker's instance, by its pid file."""
        servers = list(running_servers(self.server_logs).values())
        return servers[0] if servers else None

    def instance_name(self) -> str:
        servers = running_servers(self.server_logs)
        assert servers, self.log.read_text(errors="replace")[-2000:]
        (address,) = servers
        return f"{{ cookiecutter.package_name }}@{address}"


@dataclass
class TwoInstances:
    config: Path
    listen: str
    env: dict[str, str]
    gnaw_log: Path
    workers: list[Worker] = field(default_factory=list)

    def joined(self) -> int:
        return self.gnaw_log.read_text(errors="replace").count("Worker joined")


@contextmanager
def two_instances(
    workdir: Path, *, countdown: float | None = None, second_env: Mapping[str, str] | None = None
) -> Iterator[TwoInstances]:
    """Gnaw and two server workers on loopback; the first with a walltime countdown if given, the
    second with ``second_env`` added to its environment (e.g. another user's instance key)."""
    with ExitStack() as stack, local_service() as service:
        listen = f"tcp://127.0.0.1:{free_port()}"
        config = workdir / "grain.toml"
        config.write_text(render_config(listen, SWORKER, CAPACITY, "5s"))
        child_env = child_environment(SWORKER, service)
        gnaw = stack.enter_context(_gnaw(listen, "5s", workdir, child_env))
        grain = TwoInstances(config, listen, child_env, gnaw.log)
        for index in range(2):
            res: dict[str, Any] = {"Capacity": {"V": CAPACITY}}
            if countdown is not None and index == 0:
                res["WTime"] = {"T": f"0:0:{int(countdown)}", "countdown": True}
            command = [sys.executable, "-m", "grain.worker", "--url", listen, "--res", json.dumps(res)]
            log = workdir / f"worker{index}.log"
            server_logs = workdir / f"server-logs{index}"
            server_logs.mkdir()
            env = {**child_env, LOG_DIR_ENV: str(server_logs)}
            process = stack.enter_context(
                running_process(
                    [*command, "--sworker", SWORKER],
                    log,
                    {**env, **(second_env or {})} if index == 1 else env,
                    signal.SIGINT,
                    WORKER_STOP_TIMEOUT,
                    cwd=workdir,
                )
            )
            grain.workers.append(Worker(process, log, server_logs))
        wait(lambda: grain.joined() >= 2, 30, "both instances to join Gnaw", grain)
        yield grain


class LyingServer:
    """A stranger's server: it speaks the client's protocol and answers every call with -1."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]
        self.calls = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rwb") as stream:
            for line in stream:
                request = json.loads(line)
                self.calls += 1
                result = "hello" if request.get("op") == "hello" else -1.0
                stream.write(json.dumps({"id": request.get("id"), "result": result}).encode() + b"\n")
                stream.flush()

    def close(self) -> None:
        self.socket.close()


def register_by_hand(listen: str, name: str, fields: dict[str, Any], capacity: int = CAPACITY) -> None:
    """Register an instance of this sworker type with Gnaw as a stranger would: one message, no worker."""
    import trio
    from grain.pair import notify
    from grain.resource import Capacity

    message = {"cmd": "SRG", "name": name, "res": Capacity(V=capacity), "obj": {"_stype": SWORKER, **fields}}
    trio.run(notify, listen, message, True)


def wait(condition: Any, timeout: float, what: str, grain: TwoInstances | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "" if grain is None else "\n".join(w.log.read_text(errors="replace")[-1500:] for w in grain.workers)
            raise AssertionError(f"waited {timeout:g} s for {what}\n{logs}")
        time.sleep(0.02)


@dataclass
class HeadRun:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def summary(self) -> dict[str, Any] | None:
        lines = self.stdout.strip().splitlines()
        return json.loads(lines[-1]) if self.code == 0 and lines else None

    @property
    def crash(self) -> str:
        """What the head died of, in general terms (``KeyError: <tasklet id>``), if it did not end well."""
        errors = re.findall(r"(?m)^[\s|+]*(\w+(?:Error|Exception|Interrupt)): ?(.*)$", self.stderr)
        if not errors:
            return f"exit code {self.code}"
        kind, text = errors[-1]
        if kind == "KeyError":
            text = "<tasklet id>" if text.isdigit() else "'<instance>'" if text.startswith("'") else text
        return f"{kind}: {text}"[:200]


def lose(grain: TwoInstances, cause: str) -> None:
    """Lose the first instance by ``cause`` (``walltime``: it leaves by itself)."""
    worker = grain.workers[0]
    if cause in ("quit", "quit-force"):
        force = ["--force"] if cause == "quit-force" else []
        command = [sys.executable, "-m", "grain.cli", "quit", *force, worker.instance_name(), "-c", str(grain.config)]
        subprocess.run(command, check=True, capture_output=True, timeout=30, env=grain.env)
    elif cause == "scancel":  # Slurm signals every process of the job, the server too
        server = worker.server()
        worker.process.send_signal(signal.SIGTERM)
        if server is not None:
            try:
                server.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass  # the worker stopped it first
    elif cause == "sigkill":
        worker.process.kill()
    elif cause == "server":
        server = worker.server()
        assert server is not None
        server.kill()
    elif cause != "walltime":
        raise ValueError(cause)


def run_head(
    grain: TwoInstances, cause: str | None, *, tasks: int = TASKS, pause: float = PAUSE, compat: bool = True
) -> HeadRun:
    """A head runs ``tasks`` tasklets; once ``LOSE_AFTER`` results are in, the first instance is lost."""
    paths = [str(PROJECT), str(PROJECT / "tests"), grain.env.get("PYTHONPATH", "")]
    env = {**grain.env, "PYTHONPATH": os.pathsep.join(paths)}
    if not compat:
        env[DISABLE_ENV] = "off"
    if cause == "walltime":  # the countdown ends WALLTIME_LEAD s after the head starts
        tasks = max(tasks, WALLTIME_TASKS)
        time.sleep(max(0.0, grain.workers[0].started + COUNTDOWN_SECONDS - WALLTIME_LEAD - time.monotonic()))
    command = [sys.executable, str(Path(__file__)), "head", str(grain.config), str(tasks), str(pause)]
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile() as err:
        head = subprocess.Popen(command, stdout=out, stderr=err, env=env, stdin=subprocess.DEVNULL)
        try:
            lost = cause is None
            while head.poll() is None:
                if time.monotonic() - started > HEAD_TIMEOUT:
                    head.kill()
                    break
                if not lost and f"{PROGRESS} {LOSE_AFTER}" in Path(err.name).read_text(errors="replace"):
                    lose(grain, cause or "")
                    lost = True
                time.sleep(0.01)
        finally:
            if head.poll() is None:
                head.kill()
            head.wait()
        out.seek(0)
        return HeadRun(
            head.returncode, out.read().decode(), Path(err.name).read_text(errors="replace"), time.monotonic() - started
        )


def head_main(config: str, tasks: int, pause: float) -> int:
    """The head: ``tasks`` tasklets through the package's client; one JSON line with what came back."""
    import grain.delayed
    import trio
    from grain import GVAR
    from grain.delayed import delayed, each
    from grain.resource import Capacity

    runs: dict[Any, int] = {}
    where: dict[str, int] = {}
    done = [0]

    async def _job(argument: Any) -> Any:
        runs[argument] = runs.get(argument, 0) + 1
        result = await probe.TASKLET.fn(argument)
        await trio.sleep(pause)  # holds the slot, as a longer computation would
        done[0] += 1
        instance = str(GVAR.instance)
        where[instance] = where.get(instance, 0) + 1
        if done[0] % 50 == 0:
            print(PROGRESS, done[0], file=sys.stderr, flush=True)
        return result

    job = delayed(_job)
    arguments = [probe.example(i) for i in range(tasks)]
    results: list[Any] = []

    async def root() -> None:
        results.extend(await each([(job @ Capacity(1))(argument) for argument in arguments]))

    grain.delayed.run(root, config_file=config)
    wrong = sum(1 for argument, result in zip(arguments, results, strict=True) if not _right(argument, result))
    summary = {
        "tasks": len(results),
        "wrong": wrong,
        "ran_twice": sum(1 for n in runs.values() if n > 1),
        "per_instance": where,
    }
    print(json.dumps(summary), flush=True)
    return 0


def _right(argument: Any, result: Any) -> bool:
    try:
        probe.check(argument, result)
    except AssertionError:
        return False
    return True


def measure(runs: int, causes: list[str], compat: bool) -> dict[str, dict[str, Any]]:
    """Run each cause ``runs`` times (two fresh instances each time); crashes and results per cause."""
    table: dict[str, dict[str, Any]] = {}
    for cause in causes:
        row: dict[str, Any] = {"runs": 0, "crashed": 0, "wrong_or_missing": 0, "ran_twice": 0, "crashes": {}}
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="loss-") as folder:
                countdown = COUNTDOWN_SECONDS if cause == "walltime" else None
                with two_instances(Path(folder), countdown=countdown) as grain:
                    head = run_head(grain, cause, compat=compat)
            row["runs"] += 1
            summary = head.summary
            if summary is None:
                row["crashed"] += 1
                row["crashes"][head.crash] = row["crashes"].get(head.crash, 0) + 1
            else:
                expected = WALLTIME_TASKS if cause == "walltime" else TASKS
                row["wrong_or_missing"] += summary["wrong"] + (expected - summary["tasks"])
                row["ran_twice"] += summary["ran_twice"]
            print(
                cause,
                "crash: " + head.crash if summary is None else summary,
                f"{head.seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        table[cause] = row
    return table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    head = commands.add_parser("head")
    head.add_argument("config")
    head.add_argument("tasks", type=int)
    head.add_argument("pause", type=float)
    measuring = commands.add_parser("measure", help="crash rate per cause, with and without the compat layer")
    measuring.add_argument("--runs", type=int, default=20)
    measuring.add_argument("--cause", action="append", choices=CAUSES)
    measuring.add_argument("--without-layer", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "head":
        return head_main(args.config, args.tasks, args.pause)
    table = measure(args.runs, args.cause or list(CAUSES), compat=not args.without_layer)
    print(json.dumps(table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
