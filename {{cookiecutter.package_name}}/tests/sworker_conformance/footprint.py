"""What a module leaves on the machine: child processes and listening sockets."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Footprint:
    """Processes (our descendants) and TCP listening sockets at one moment."""

    taken_at: float
    processes: frozenset[int]
    listening: frozenset[tuple[str, int, int | None]]

    @classmethod
    def empty(cls) -> Footprint:
        return cls(0.0, frozenset(), frozenset())

    @classmethod
    def now(cls) -> Footprint:
        me = psutil.Process()
        processes = set()
        for child in me.children(recursive=True):
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    processes.add(child.pid)
            except psutil.NoSuchProcess:
                pass
        listening = set()
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr:
                listening.add((connection.laddr.ip, connection.laddr.port, connection.pid))
        return cls(time.time(), frozenset(processes), frozenset(listening))

    def added_since(self, before: Footprint) -> Footprint:
        """What is here now and was not ``before``; sockets only of our own or newer processes."""
        ours = {os.getpid(), *self.processes}
        listening = {
            entry
            for entry in self.listening - before.listening
            if entry[2] is None or entry[2] in ours or _started_after(entry[2], before.taken_at)
        }
        return Footprint(self.taken_at, self.processes - before.processes, frozenset(listening))

    def describe(self) -> str:
        parts = [f"process {pid} ({_cmdline(pid)})" for pid in sorted(self.processes)]
        parts += [f"a socket listening on {ip}:{port} (pid {pid})" for ip, port, pid in sorted(self.listening, key=str)]
        return ", ".join(parts)

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


def _started_after(pid: int, moment: float) -> bool:
    try:
        return psutil.Process(pid).create_time() >= moment - 0.5
    except psutil.Error:
        return False


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())[:120] or "?"
    except psutil.Error:
        return "gone"
