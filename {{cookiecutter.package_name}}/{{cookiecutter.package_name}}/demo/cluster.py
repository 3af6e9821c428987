"""The smoke run on your cluster: this process is the head, Grain's ``grain up`` submits the workers.

``python -m {{ cookiecutter.package_name }}.demo --config grain.cluster.toml --workers N`` reads
your config with Grain's own loader, checks it for the known hazards, becomes the Grain head
(which starts Gnaw, as your head script would), and then, in this order, because a worker
dials the head before it starts its server: ``grain up -n N -c CONFIG``, a bounded wait for the
N instances, the batch, ``grain quit '<package>@*'`` and a bounded wait for the workers to leave.
Slurm's and PBS's own commands only follow and, on failure, cancel the jobs it submitted.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import psutil
from grain.config import load_conf
from grain.resource import WTime

from .local_grain import child_environment
from .watch import RunFailed, Watch, tail

#: Bounded waits: ``grain up``/``grain quit`` themselves, the workers leaving the head after
#: ``grain quit``, their jobs leaving the queue, a queue command.
GRAIN_COMMAND_TIMEOUT = 120.0
LEAVE_TIMEOUT = 30.0
JOBS_LEAVE_TIMEOUT = 60.0
#: After a failure, jobs still queued then (e.g. never started) are cancelled.
FAILED_JOBS_LEAVE_TIMEOUT = 10.0
QUEUE_COMMAND_TIMEOUT = 15.0
#: How often the queue and the worker logs are looked at while the workers start.
JOIN_POLL_SECONDS = 1.0
#: Grain keeps this much of the walltime for the worker to leave (``grain.cli.norm_wtime``).
WALLTIME_RESERVE_SECONDS = 180
#: A file older than this, before the submission, is not this run's worker log.
LOG_CLOCK_SLACK_SECONDS = 60.0
CRASHED = "Traceback (most recent call last)"
#: What squeue and qstat say of ids they do not know (any more): those jobs are over.
UNKNOWN_JOB = re.compile(r"(?i)invalid job id|unknown job id")


class ConfigError(Exception):
    """The arguments or the config cannot work; nothing was started."""


@dataclass(frozen=True)
class QueueCommands:
    """How to tell a batch system's job ids, follow the jobs and cancel them."""

    submitted: re.Pattern[str]
    queued: Callable[[list[str]], list[str]]
    cancel: str


SYSTEMS = {
    # sbatch prints "Submitted batch job 123"; squeue lists the jobs not yet finished.
    "slurm": QueueCommands(
        re.compile(r"Submitted batch job (\d+)"),
        lambda ids: ["squeue", "--noheader", "--format=%i", "--states=PD,CF,R,CG,S", f"--jobs={','.join(ids)}"],
        "scancel",
    ),
    # qsub prints the job id alone on a line; qstat lists jobs that are queued, running or exiting.
    "pbs": QueueCommands(re.compile(r"^(\d+(?:\.[\w.-]+)?)\s*$", re.MULTILINE), lambda ids: ["qstat", *ids], "qdel"),
}


@dataclass(frozen=True)
class ClusterConfig:
    """A Grain config read with Grain's own loader, as ``grain up`` and the head read it."""

    path: Path
    head: Any
    worker: Any

    @classmethod
    def load(cls, path: Path) -> ClusterConfig:
        if not path.is_file():
            raise ConfigError(f"no Grain config at {path}")
        try:
            conf = load_conf(str(path))
        except Exception as exc:  # TOML syntax, or a value of the wrong type for Grain
            raise ConfigError(f"Grain cannot read {path}: {type(exc).__name__}: {exc}") from exc
        return cls(path.resolve(), conf.head, conf.worker)

    @property
    def system(self) -> str:
        return "custom" if self.worker.custom_system else str(self.worker.system).lower()

    def countdown_seconds(self) -> float | None:
        """The workers' ``WTime`` countdown (walltime minus Grain's 3 minutes), if a walltime is set."""
        walltime = str(self.worker.script.walltime)
        if not walltime:
            return None
        seconds: float = WTime(T=walltime.replace("-", ":")).T
        return seconds - WALLTIME_RESERVE_SECONDS


def config_problems(config: ClusterConfig, sworker: str, workers: int, backendless: bool) -> list[str]:
    """What would make the run fail, said before anything is submitted."""
    worker, script = config.worker, config.worker.script
    problems = []
    if worker.specialized_type != sworker:
        problems.append(f"[worker] specialized_type is {worker.specialized_type!r}; this demo runs {sworker!r}")
    if not config.head.gnaw.enabled:
        problems.append("[head.gnaw] enabled = false: the smoke run follows the instances through Gnaw; enable it")
    if problem := listen_problem(str(config.head.listen)):
        problems.append(problem)
    if script.memory and not script.cores:
        problems.append("[worker.script] memory without cores: Gnaw panics on Node(N=0); set cores too")
    if backendless:
        if workers:
            problems.append("a backendless sworker runs in the head: no worker job is needed, use --workers 0")
        return problems
    if workers < 1:
        problems.append("a server sworker needs workers: --workers N with N >= 1")
    if config.system not in (*SYSTEMS, "custom"):
        problems.append(
            f"[worker] system = {worker.system!r}: grain up would run each worker here, in the foreground, "
            'one after the other; set system = "slurm" or "pbs"'
        )
    if config.system in SYSTEMS and not script.cores:
        problems.append(f"[worker.script] cores is required by {config.system} (it sets the job's cores)")
    if config.system == "slurm" and script.queue in ("", "''"):
        problems.append("[worker.script] queue is not set: grain up would ask sbatch for partition ''")
    try:
        countdown = config.countdown_seconds()
    except ValueError:
        problems.append(f"[worker.script] walltime = {script.walltime!r} is not [days-]hours:minutes:seconds")
        return problems
    if countdown is not None and countdown <= 0:
        problems.append(
            f"[worker.script] walltime = {script.walltime!r} is not over 3 minutes: Grain gives the worker "
            "walltime minus 3 minutes, which is not positive, and the worker crashes at start"
        )
    return problems


def listen_problem(listen: str) -> str | None:
    """Why this machine cannot listen on the head's address (Gnaw would panic there), or None."""
    address = urlsplit(listen)
    if address.scheme != "tcp" or not address.hostname or gnaws_listening_on(listen):
        return None  # another transport, or a running Gnaw that the head attaches to
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address.hostname, address.port or 0))
    except OSError as exc:
        return f"[head] listen = {listen!r}: this machine cannot listen there ({exc}); give its cluster address"
    return None


def worker_log_pattern(log_file: str, cwd: Path) -> str:
    """A glob for the workers' logs: Grain's variables (``HHMMSS`` in double braces, the time of
    submission) and Slurm's ``%j`` (the job id) and other ``%`` codes become wildcards."""
    pattern = glob.escape(log_file)
    pattern = re.sub(r"\{\{\w+\}\}", "*", pattern)
    pattern = re.sub(r"%(%|\w)", lambda code: "%" if code[1] == "%" else "*", pattern)
    return pattern if os.path.isabs(pattern) else str(cwd / pattern)


@dataclass
class ClusterStage:
    """Around the batch, on the head: submit the workers, wait for them, stop them."""

    config: ClusterConfig
    sworker: str
    workers: int
    say: Callable[[str], None]
    cwd: Path = field(default_factory=Path.cwd)
    job_ids: list[str] = field(default_factory=list)
    submitted_at: float = 0.0
    quit_sent: bool = False

    @property
    def queue(self) -> QueueCommands | None:
        return SYSTEMS.get(self.config.system)

    @property
    def quit_pattern(self) -> str:
        """Every instance of this package, as ``grain quit`` names them."""
        return f"{self.sworker.partition('.')[0]}@*"

    def worker_logs(self) -> list[Path]:
        """This run's worker logs (the config's ``log_file``), oldest first."""
        if not self.submitted_at:
            return []
        log_file = str(self.config.worker.log_file)
        if self.job_ids and "%j" in log_file:  # exactly this run's jobs
            patterns = [worker_log_pattern(log_file.replace("%j", job), self.cwd) for job in self.job_ids]
            since = 0.0
        else:  # those written since the submission
            patterns = [worker_log_pattern(log_file, self.cwd)]
            since = self.submitted_at - LOG_CLOCK_SLACK_SECONDS
        found = []
        for name in sorted({name for pattern in patterns for name in glob.glob(pattern)}):
            try:
                if os.stat(name).st_mtime >= since:
                    found.append(Path(name))
            except OSError:
                continue
        return found

    async def before(self, watch: Watch) -> None:
        if not self.workers:
            return  # backendless: the instance is the head's own
        self.submitted_at = time.time()
        output, code = await self._grain("up", "-n", str(self.workers))
        self._note_jobs(output)  # first: the jobs a failing grain up did submit are still followed and cancelled
        if code != 0:
            raise RunFailed(f"grain up exited with code {code}")
        self.say(
            f"waiting up to {watch.join_within:g} s for {self.workers} instance(s); worker logs: "
            f"{worker_log_pattern(self.config.worker.log_file, self.cwd)}"
        )
        announced: set[str] = set()
        while True:
            for name in sorted(watch.instances.live - announced):
                announced.add(name)
                self.say(f"{name} joined ({len(announced)} of {self.workers})")
            if len(watch.instances.live) >= self.workers:
                return
            if problem := self._crashed_worker() or await self._job_ended_early():
                raise RunFailed(problem)
            await anyio.sleep(JOIN_POLL_SECONDS)

    async def after(self, watch: Watch) -> None:
        if not self.workers:
            return
        _, code = await self._grain("quit", self.quit_pattern)
        if code != 0:
            raise RunFailed(f"grain quit exited with code {code}")
        self.quit_sent = True
        with anyio.move_on_after(LEAVE_TIMEOUT):
            await watch.instances.until(lambda instances: not instances.live)
        if still := sorted(watch.instances.live):
            self.say(f"still with the head {LEAVE_TIMEOUT:g} s after grain quit: {', '.join(still)}")
        else:
            self.say("the workers left the head")

    def _grain_command(self, *args: str) -> list[str]:
        """Say ``grain ARGS -c CONFIG``, and return the command that runs it with this Python."""
        said = ["grain", *args, "-c", str(self.config.path)]
        self.say(f"$ {shlex.join(said)}")
        return [sys.executable, "-m", "grain.cli", *said[1:]]

    async def _grain(self, *args: str) -> tuple[str, int]:
        """Run ``grain ARGS`` (bounded), saying it and its output; that output, and its exit code."""
        try:
            with anyio.fail_after(GRAIN_COMMAND_TIMEOUT):
                done = await anyio.run_process(
                    self._grain_command(*args),
                    check=False,
                    cwd=self.cwd,
                    env=child_environment(self.sworker, {}),
                    stdin=subprocess.DEVNULL,
                )
        except TimeoutError:
            raise RunFailed(f"grain {args[0]} did not finish within {GRAIN_COMMAND_TIMEOUT:g} s") from None
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        for line in output.splitlines():
            self.say(f"  {line}")
        return output, done.returncode

    def _note_jobs(self, output: str) -> None:
        if self.queue is None:
            return  # a custom system: its output is its own
        self.job_ids = self.queue.submitted.findall(output)
        if len(self.job_ids) < self.workers:
            raise RunFailed(
                f"grain up submitted {len(self.job_ids)} of {self.workers} job(s) (it exits 0 whatever "
                f"{'sbatch' if self.config.system == 'slurm' else 'qsub'} said); its output is above"
            )

    def _crashed_worker(self) -> str | None:
        for log in self.worker_logs():
            try:
                crashed = CRASHED in log.read_text(errors="replace")
            except OSError:
                continue
            if crashed:
                return f"a worker crashed before its instance joined the head; its log, {log}, ends:\n{tail(log)}"
        return None

    async def _job_ended_early(self) -> str | None:
        """A job that left the queue before every instance joined: its worker is gone."""
        queued = await self.jobs_in_queue()
        if queued is None:
            return None
        ended = [job for job in self.job_ids if job not in queued]
        if not ended:
            return None
        return f"job(s) {', '.join(ended)} ended before every instance joined the head (see the worker logs below)"

    async def jobs_in_queue(self) -> set[str] | None:
        """Which of this run's jobs the batch system still holds (None: it could not be asked)."""
        if self.queue is None or not self.job_ids:
            return None
        try:
            with anyio.fail_after(QUEUE_COMMAND_TIMEOUT):
                done = await anyio.run_process(self.queue.queued(self.job_ids), check=False)
        except (OSError, TimeoutError):
            return None
        return _queued_ids(self.job_ids, done)

    def finish(self, failed: bool) -> None:
        """After the head: make sure the workers go, and that their jobs leave the queue (bounded)."""
        if not self.submitted_at:
            return
        if not self.quit_sent:
            # The head is gone but Gnaw still holds the workers: it tells them to leave now.
            command = self._grain_command("quit", "--force", self.quit_pattern)
            self._run(command, GRAIN_COMMAND_TIMEOUT, cwd=self.cwd, env=child_environment(self.sworker, {}))
        if self.queue is None:
            self.say(f"check that the workers' jobs ended: this run cannot follow {self.config.system!r} jobs")
            return
        left = self._wait_for_jobs(FAILED_JOBS_LEAVE_TIMEOUT if failed else JOBS_LEAVE_TIMEOUT)
        if left:
            self.say(f"job(s) {', '.join(sorted(left))} still queued: cancelling them ({self.queue.cancel})")
            self._run([self.queue.cancel, *sorted(left)], QUEUE_COMMAND_TIMEOUT)
            left = self._wait_for_jobs(LEAVE_TIMEOUT)
        if left:
            self.say(f"job(s) {', '.join(sorted(left))} still queued after cancelling: check them")
        elif self.job_ids:
            self.say(f"job(s) {', '.join(self.job_ids)} ended")

    def _run(self, command: list[str], timeout: float, **options: Any) -> None:
        """Run a command on the way out; say so if it fails or hangs, and go on."""
        try:
            done = subprocess.run(command, check=False, capture_output=True, timeout=timeout, **options)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.say(f"{shlex.join(command)}: {exc}")
            return
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip()
            self.say(f"{shlex.join(command)} exited with code {done.returncode}: {said}")

    def _wait_for_jobs(self, timeout: float) -> set[str]:
        assert self.queue is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                done = subprocess.run(
                    self.queue.queued(self.job_ids), check=False, capture_output=True, timeout=QUEUE_COMMAND_TIMEOUT
                )
                queued = _queued_ids(self.job_ids, done)
            except (OSError, subprocess.TimeoutExpired):
                queued = None
            if queued is not None and not queued:
                return set()
            if time.monotonic() > deadline:
                return queued if queued is not None else set(self.job_ids)
            time.sleep(0.5)


def _queued_ids(ids: list[str], done: subprocess.CompletedProcess[bytes]) -> set[str] | None:
    """The ids among ``ids`` that a queue listing shows; None if the batch system did not answer."""
    output = done.stdout.decode(errors="replace")
    listed = {job for job in ids if re.search(rf"(?m)^\s*{re.escape(job)}\b", output)}
    if done.returncode != 0 and not listed:
        # squeue and qstat fail when no id is known (any more); any other failure tells nothing.
        return set() if UNKNOWN_JOB.search(done.stderr.decode(errors="replace")) else None
    return listed


def gnaws_listening_on(listen: str) -> set[int]:
    """Gnaw processes serving ``listen`` (as Grain's head finds them, by their ``-wurl``)."""
    found = set()
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "gnaw" and "-wurl" in cmdline:
            index = cmdline.index("-wurl")
            if cmdline[index + 1 : index + 2] == [listen]:
                found.add(process.pid)
    return found


def stop_gnaws(pids: set[int]) -> None:
    """End the Gnaw the head started (it would linger for ``idle_quit``), by pid, bounded."""
    processes = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.terminate()
            processes.append(process)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(processes, timeout=1.0)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=5.0)
