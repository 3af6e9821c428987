"""What a module leaves on the machine: child processes and listening sockets.

Only what this process started counts: its descendants, and processes that
left the family tree (a double fork, a parent that died) but still carry the
marker this module puts in the environment every child inherits. A process of
anyone else, even one started during the check, is never reported or killed.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time
from dataclasses import dataclass

import psutil

#: Inherited by every process this one starts: how an orphan is known to be ours.
LINEAGE_ENV = "SWORKER_KIT_LINEAGE"
LINEAGE = f"{os.getpid()}-{time.time_ns()}"
os.environ[LINEAGE_ENV] = LINEAGE
#: Orphans are looked for among processes started since then (psutil's start times are coarse: a slack).
_SINCE = time.time() - 5.0


@dataclass(frozen=True)
class Footprint:
    """Our processes (descendants and marked orphans) and their TCP listening sockets at one moment."""

    taken_at: float
    processes: frozenset[int]
    listening: frozenset[tuple[str, int, int | None]]

    @classmethod
    def empty(cls) -> Footprint:
        return cls(0.0, frozenset(), frozenset())

    @classmethod
    def now(cls) -> Footprint:
        taken_at = time.time()
        processes = {child.pid for child in psutil.Process().children(recursive=True) if _alive(child)}
        processes |= _marked_orphans(processes)
        ours = {os.getpid(), *processes}
        listening = set()
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.pid in ours:
                listening.add((connection.laddr.ip, connection.laddr.port, connection.pid))
        return cls(taken_at, frozenset(processes), frozenset(listening))

    def added_since(self, before: Footprint) -> Footprint:
        """What is here now and was not ``before`` (a socket counts by its address, whichever pid shows it)."""
        addresses = {(ip, port) for ip, port, _ in before.listening}
        listening = {entry for entry in self.listening if entry[:2] not in addresses}
        return Footprint(self.taken_at, self.processes - before.processes, frozenset(listening))

    def describe(self) -> str:
        parts = [f"process {pid} ({_cmdline(pid)})" for pid in sorted(self.processes)]
        parts += [f"a socket listening on {ip}:{port} (pid {pid})" for ip, port, pid in sorted(self.listening, key=str)]
        return ", ".join(parts)

    @classmethod
    def reap_since(cls, before: Footprint) -> str:
        """Kill what was added since ``before``, and say what it was ("" if nothing; told while names are known)."""
        left = cls.now().added_since(before)
        description = left.describe()
        left.kill()
        return description

    def __bool__(self) -> bool:
        return bool(self.processes or self.listening)

    def kill(self) -> None:
        """End every process in this footprint (the kit leaves nothing behind, even for broken modules)."""
        pids = set(self.processes) | {pid for _, _, pid in self.listening if pid and pid != os.getpid()}
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                psutil.Process(pid).wait(5)
            except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
                pass
        settle_popen_objects(pids)


def settle_popen_objects(pids: set[int]) -> None:
    """Let the module's ``Popen`` objects for ``pids`` see that their process is gone.

    The kit reaped them; a ``Popen`` that never learns it warns "subprocess is still
    running" (a ResourceWarning) whenever it is collected, long after the check.
    """
    if not pids:
        return
    for candidate in gc.get_objects():
        if isinstance(candidate, subprocess.Popen) and candidate.pid in pids and candidate.returncode is None:
            try:
                candidate.poll()
            except Exception:  # best effort: the process is gone either way
                pass


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _marked_orphans(known: set[int]) -> set[int]:
    """Processes started since the kit was loaded (not already ``known``) whose environment carries our marker."""
    found = set()
    for process in psutil.process_iter(["create_time"]):
        if process.pid in known or process.pid == os.getpid() or (process.info["create_time"] or 0) < _SINCE:
            continue
        try:
            if process.environ().get(LINEAGE_ENV) == LINEAGE and _alive(process):
                found.add(process.pid)
        except psutil.Error:
            pass
    return found


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())[:120] or "?"
    except psutil.Error:
        return "gone"
