"""Rule 7's eyes: every stall of the event loop while the client works, and where the loop was blocked.

A heartbeat task in the loop wakes every few milliseconds; a late wake-up is a
stall. A watchdog thread samples the loop thread's stack (``sys._current_frames``)
while the heartbeat is late, so a stall comes with the line that blocked it, e.g.
``ssl.py`` loading certificates, called from the module's client building a new
HTTP client per request. Stalls that are not the module's doing are not counted:
the loop idle in its own wait (the machine was busy), the kit's own code, and an
import on first use (paid once per process).
"""

from __future__ import annotations

import linecache
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskStatus

#: The heartbeat's period, and how late it must be before the watchdog samples the loop's stack.
INTERVAL = 0.005
SAMPLE_AFTER = 0.01
#: Stalls shorter than this are not kept (they only count towards a steady, per-call block).
RECORD_MIN = 0.02
MAX_FRAMES = 60
#: Where the event loop waits when it has nothing to do: a sample there is the machine, not the module.
IDLE_FRAMES = {
    ("selectors", "select"),
    ("trio._core._io_epoll", "get_events"),
    ("trio._core._io_kqueue", "get_events"),
    ("trio._core._io_windows", "get_events"),
}


@dataclass(frozen=True)
class Frame:
    module: str
    filename: str
    lineno: int
    function: str

    def describe(self) -> str:
        code = linecache.getline(self.filename, self.lineno).strip()
        where = f"{_short(self.filename)}:{self.lineno} in {self.function}"
        return f"{where} (`{code[:80]}`)" if code else where


@dataclass
class Sample:
    at: float
    phase: str | None
    frames: tuple[Frame, ...]


@dataclass
class Stall:
    """The loop did not run for ``seconds`` during ``phase``; ``where`` it was blocked, if seen."""

    seconds: float
    phase: str
    where: Frame | None = None
    #: The innermost frame of the module (or its probe) on the way there.
    caller: Frame | None = None

    def location(self) -> str:
        if self.where is None:
            return "at a place the kit could not sample (a C call that holds the GIL?)"
        text = f"at {self.where.describe()}"
        if self.caller is not None and self.caller != self.where:
            text += f", called from {self.caller.describe()}"
        return text

    @property
    def key(self) -> Frame | None:
        return self.caller or self.where


@dataclass
class LoopWatch:
    """Watches the running event loop; ``phase`` names what the kit is doing (None: not watched)."""

    own_modules: tuple[str, ...] = ()
    phase: str | None = None
    stalls: list[Stall] = field(default_factory=list)
    _beat: float = 0.0
    _loop_thread: int | None = None
    _samples: list[Sample] = field(default_factory=list)
    _lateness: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _beats: int = 0

    @asynccontextmanager
    async def watching(self, phase: str) -> AsyncIterator[None]:
        """Watch the block as ``phase``; a stall is attributed to one phase only (a beat between them)."""
        await self._next_beat()
        self.phase = phase
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await self._next_beat()
            self.phase = None

    async def _next_beat(self) -> None:
        beats = self._beats
        for _ in range(20):
            await anyio.sleep(INTERVAL)
            if self._beats != beats:
                return

    def ongoing(self) -> Stall | None:
        """The stall in progress now, if any (for a loop that never came back)."""
        now = time.monotonic()
        gap = now - self._beat
        if self._loop_thread is None or gap < RECORD_MIN:
            return None
        phase, where, caller = self._summary([sample for sample in self._samples if sample.at > self._beat])
        return Stall(gap, phase or "", where, caller)

    @property
    def last_beat(self) -> float:
        """When the loop last ran the heartbeat (a loop blocked for good stops it)."""
        return self._beat if self._loop_thread is not None else time.monotonic()

    def stop(self) -> None:
        """Stop the watchdog thread (the loop's own task ends with the loop)."""
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The heartbeat; runs until cancelled (with the watchdog thread beside it)."""
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        watchdog = threading.Thread(target=self._watchdog, name="sworker-kit-watchdog", daemon=True)
        watchdog.start()
        try:
            task_status.started()
            cpu = time.thread_time()
            while True:
                await anyio.sleep(INTERVAL)
                now, cpu_now = time.monotonic(), time.thread_time()
                gap = now - self._beat - INTERVAL
                if gap >= RECORD_MIN:
                    self._record(self._beat, now, gap, cpu_now - cpu)
                elif len(self._samples) + len(self._lateness) > 100:  # short lags: nothing to keep
                    self._samples, self._lateness = [], []
                self._beat, cpu = now, cpu_now
                self._beats += 1
        finally:
            self._stop.set()
            watchdog.join(1.0)

    def _watchdog(self) -> None:
        wanted = time.monotonic() + INTERVAL
        while not self._stop.wait(INTERVAL):
            now = time.monotonic()
            if now - wanted > SAMPLE_AFTER:  # this thread was not run either: the machine is busy
                self._lateness.append((now, now - wanted))
            wanted = now + INTERVAL
            if now - self._beat > SAMPLE_AFTER and self._loop_thread is not None:
                frame = sys._current_frames().get(self._loop_thread)
                frames: list[Frame] = []
                while frame is not None and len(frames) < MAX_FRAMES:
                    code = frame.f_code
                    module = str(frame.f_globals.get("__name__", ""))
                    frames.append(Frame(module, code.co_filename, frame.f_lineno, code.co_name))
                    frame = frame.f_back
                del frame
                self._samples.append(Sample(now, self.phase, tuple(frames)))

    def _record(self, start: float, end: float, gap: float, cpu: float) -> None:
        samples = [sample for sample in self._samples if start < sample.at <= end + SAMPLE_AFTER]
        self._samples = [sample for sample in self._samples if sample.at > end + SAMPLE_AFTER]
        lateness = max((late for at, late in self._lateness if start < at <= end + INTERVAL), default=0.0)
        self._lateness = [entry for entry in self._lateness if entry[0] > end]
        phase, where, caller = self._summary(samples)
        if phase is None:
            return  # not watched: the kit's own work between calls
        if where is None and cpu < 0.5 * gap:
            return  # the loop was idle (the machine was busy), in the kit, or importing
        # The module's share: what the watchdog did not wait too (a machine too busy to run either
        # thread is not the module's doing), unless the loop thread itself was busy on the CPU.
        own = max(gap - lateness, cpu)
        self.stalls.append(Stall(own, phase, where, caller))

    def _summary(self, samples: list[Sample]) -> tuple[str | None, Frame | None, Frame | None]:
        """A stall's samples summed up: the phase most were taken in (else the current one), and the place the
        loop was blocked most often, with the module's frame on the way there (None, None: not the module's)."""
        phases = Counter(sample.phase for sample in samples if sample.phase)
        phase = phases.most_common(1)[0][0] if phases else self.phase
        located = Counter(found for found in map(self._locate, samples) if found is not None)
        where, caller = located.most_common(1)[0][0] if located else (None, None)
        return phase, where, caller

    def _locate(self, sample: Sample) -> tuple[Frame, Frame] | None:
        """(innermost frame, innermost frame of the module or its probe), or None if not theirs."""
        frames = sample.frames
        if not frames or (frames[0].module, frames[0].function) in IDLE_FRAMES:
            return None
        if any(frame.module.startswith("importlib") or "importlib._bootstrap" in frame.filename for frame in frames):
            return None  # an import on first use: once per process
        caller = next((frame for frame in frames if self._is_own(frame.module)), None)
        return (frames[0], caller) if caller is not None else None

    def _is_own(self, module: str) -> bool:
        return any(module == own or module.startswith(own + ".") for own in self.own_modules)


def _short(filename: str) -> str:
    """A file name as a reader finds it: relative to the working directory, or from site-packages on."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    try:
        from pathlib import Path

        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        for root in sorted((p for p in sys.path if p), key=len, reverse=True):
            if filename.startswith(root.rstrip("/") + "/"):
                return filename[len(root.rstrip("/")) + 1 :]
        return filename
