"""Watch what a demo run depends on, so that it never waits silently.

Grain itself never gives up: a tasklet that fails is retried, three failures in a row drop the
instance, and with no instance left the head waits for another one forever (nothing in Grain
checks that a worker or a server is alive). The demo knows what it started and how many
instances it expects, so it watches for what cannot come back and ends the run with the reason.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import anyio

#: How often the watch looks; a failure is reported within this much of happening.
POLL_SECONDS = 0.2
#: With no instance left, how long to give a worker that reconnects (it registers anew).
LOST_GRACE_SECONDS = 3.0
TAIL_LINES = 25
TAIL_BYTES = 4000

#: Grain 0.17's head logs these when it starts, and tears down, the client of one sworker
#: instance (``_reg`` in remote_exer.py, ``GrainSpecializedRemote.aclose`` in head.py).
JOINED = re.compile(r"^client for specialized worker (?P<name>.+) started$")
LEFT = re.compile(r"^client for specialized worker (?P<name>.+) starts cleaning up$")


#: A traceback's last line, also inside an exception group's ``|`` frame.
ERROR_LINE = re.compile(r"^[\s|+-]*((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit): .+)$")


class RunFailed(Exception):
    """The run cannot finish; the message says why."""


class Instances(logging.Handler):
    """The sworker instances this head holds, as Grain's head logs them joining and leaving.

    Why the log: Grain 0.17 keeps the instances in a local variable of
    ``RemoteExecutor.run_sworker_clients`` and offers no call or callback for them, but its head
    logs one line when it starts an instance's client and one when it tears it down, whatever
    the reason: three failed tasklets, a worker gone (killed, its job cancelled, its walltime
    countdown over), or told to leave. That is the head's own view, the one that decides whether
    the batch can go on. Counting failures in the tasklet would copy Gnaw's health rule and miss
    instances that leave without one; ``grain ls`` prints a table meant for people. The package
    pins its Grain minor, and the demo's tests kill a server and a worker to prove the lines come.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.live: set[str] = set()
        self.gone: set[str] = set()
        self.changed_at = time.monotonic()
        self._changed: anyio.Event | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if joined := JOINED.match(message):
            self.live.add(joined["name"])
            self.gone.discard(joined["name"])
        elif left := LEFT.match(message):
            if left["name"] in self.live:
                self.live.remove(left["name"])
                self.gone.add(left["name"])
        else:
            return
        self.changed_at = time.monotonic()
        if self._changed is not None:  # Grain logs from the head's event loop: wake whoever waits
            self._changed.set()
            self._changed = None

    async def until(self, done: Callable[[Instances], bool]) -> None:
        """Return once ``done(self)``; a time limit around it (or the watch beside it) bounds the wait."""
        while not done(self):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()


@contextmanager
def instances_of_this_head() -> Iterator[Instances]:
    """Follow the head's instances while the block runs (Grain's records arrive at INFO)."""
    logger = logging.getLogger("grain")
    instances = Instances()
    level = logger.level
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    logger.addHandler(instances)
    try:
        yield instances
    finally:
        logger.removeHandler(instances)
        logger.setLevel(level)


@dataclass
class Tally:
    """What the batch's tasklets saw on each instance: results, errors, when."""

    started: float = field(default_factory=time.perf_counter)
    results: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    on_first_result: Callable[[str, float], None] | None = None

    def result(self, instance: str) -> None:
        after = time.perf_counter() - self.started
        if not self.results and self.on_first_result is not None:
            self.on_first_result(instance, after)
        self.results.setdefault(instance, []).append(after)

    def error(self, instance: str, exc: BaseException) -> None:
        self.errors.setdefault(instance, []).append(f"{type(exc).__name__}: {exc}")

    def count(self) -> int:
        return sum(len(times) for times in self.results.values())

    def errors_on(self, names: Sequence[str]) -> str:
        """The last tasklet error on each of ``names``, one line each ('' if none failed)."""
        lines = []
        for name in names:
            if errors := self.errors.get(name):
                lines.append(f"{len(errors)} tasklet error(s) on {name}, the last: {errors[-1]}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Watched:
    """A process this run started and needs until the end, and where its output goes."""

    what: str
    process: subprocess.Popen[bytes]
    log: Path


class Watch:
    """Raises :class:`RunFailed` as soon as the run cannot finish.

    It fails when a watched process exits, when the instances that joined are all gone (after
    a short grace for a worker that reconnects), or when fewer than ``expected`` instances
    joined within ``join_within`` seconds.
    """

    def __init__(
        self,
        instances: Instances,
        tally: Tally,
        *,
        expected: int,
        join_within: float,
        processes: Sequence[Watched] = (),
        logs: Callable[[], list[Path]] = list,
        lost_grace: float = LOST_GRACE_SECONDS,
    ) -> None:
        self.instances = instances
        self.tally = tally
        self.expected = expected
        self.join_deadline = time.monotonic() + join_within
        self.join_within = join_within
        self.processes = list(processes)
        self._logs = logs
        self.lost_grace = lost_grace
        self.joined_all = False

    def logs(self) -> list[Path]:
        """The logs whose tails explain a failure: the workers', and those of processes that exited."""
        exited = [watched.log for watched in self.processes if watched.process.poll() is not None]
        return list(dict.fromkeys([*exited, *self._logs()]))

    async def run(self) -> NoReturn:
        while True:
            self.check()
            await anyio.sleep(POLL_SECONDS)

    def check(self) -> None:
        """Raise :class:`RunFailed` if the run cannot finish any more."""
        instances = self.instances
        exited = [watched for watched in self.processes if watched.process.poll() is not None]
        if len(instances.live) >= self.expected:
            self.joined_all = True
        if instances.gone and not instances.live:
            waited = time.monotonic() - instances.changed_at
            if exited or waited > self.lost_grace:
                raise RunFailed(self._lost(sorted(instances.gone), exited))
        if exited:
            lines = ["; ".join(_exited(watched) for watched in exited) + self._joined_so_far()]
            if errors := self.tally.errors_on(sorted(instances.live | instances.gone)):
                lines.append(errors)
            raise RunFailed("\n".join(lines))
        if not self.joined_all and time.monotonic() > self.join_deadline:
            raise RunFailed(
                f"{len(instances.live)} of {self.expected} sworker instance(s) joined the head "
                f"within {self.join_within:g} s{self._joined_so_far()}"
            )

    def _lost(self, names: list[str], exited: list[Watched]) -> str:
        done = self.tally.count()
        lines = [
            f"the head lost its last sworker instance ({', '.join(names)}) with {done} result(s) in, "
            "and Grain would wait for another one forever"
        ]
        if errors := self.tally.errors_on(names):
            lines.append(errors)
        lines += [_exited(watched) for watched in exited]
        return "\n".join(lines)

    def _joined_so_far(self) -> str:
        names = sorted(self.instances.live | self.instances.gone)
        return f" (joined so far: {', '.join(names)})" if names else " (no instance had joined the head)"


def _exited(watched: Watched) -> str:
    code = watched.process.returncode
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    error = last_error(watched.log)
    return f"{watched.what} (pid {watched.process.pid}) {how}" + (f": {error}" if error else "")


def last_error(log: Path) -> str:
    """The last ``SomeError: message`` line of a log (a traceback's last word), or ''."""
    for line in reversed(tail(log, TAIL_LINES * 4).splitlines()):
        if found := ERROR_LINE.match(line):
            return found[1]
    return ""


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a log ('' if it is empty or missing)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def log_tails(paths: Sequence[Path]) -> str:
    """Each log's tail under a line naming it, for a failure report."""
    blocks = []
    for path in paths:
        text = tail(path)
        blocks.append(f"--- {path}, last lines:\n{text}" if text else f"--- {path}: empty")
    return "\n".join(blocks)
