"""Network namespaces, veth pairs and bridges that a test makes and undoes, and the processes it
starts in them: the one helper for it.

Tests stand in for hosts with network namespaces: each "host" is a namespace, joined to others (or
to this machine's own namespace) by veth pairs, optionally through a bridge. ``Network`` records
everything it makes and undoes it on exit, even on failure: it ends every process still inside its
namespaces by pid (they can only be the test's), deletes the namespaces (which deletes the links in
them) and then any link of its own left in this machine's namespace.

A machine that does not allow any of it (no ``ip`` command, not root, no veth or bridge support)
raises ``Unavailable`` with the reason, for the caller to skip or fail with.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Unavailable(Exception):
    """This machine does not let the test make network namespaces or links; the message says why."""


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=10)


def must(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{' '.join(map(str, result.args))}: {result.stderr.strip()}"


def inside(namespace: str, command: list[str]) -> list[str]:
    """``command`` run inside ``namespace``. ``nsenter`` execs it (the pid is the command's), and,
    unlike ``ip netns exec``, it leaves /sys alone (slurmd needs the cgroup mounts under it)."""
    return ["nsenter", f"--net=/run/netns/{namespace}", *command]


@contextmanager
def started(
    namespace: str | None,
    command: list[str],
    log: Path,
    env: Mapping[str, str],
    stop_signal: signal.Signals,
    grace: float,
    *,
    cwd: Path | None = None,
    stderr_log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` (inside ``namespace``, None: this machine's own), in its own session, in ``cwd``
    (None: this process's), output to ``log`` (its stderr to ``stderr_log`` if given). On exit it gets
    ``stop_signal``, then ``grace`` seconds, then SIGKILL (its whole process group), and is reaped.
    Should the test process die without that, the kernel kills it."""
    with open(log, "wb") as output, ExitStack() as files:
        errors = files.enter_context(open(stderr_log, "wb")) if stderr_log else subprocess.STDOUT
        process = subprocess.Popen(
            inside(namespace, command) if namespace else command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=errors,
            env=dict(env),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(stop_signal)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free now on ``host`` (``0.0.0.0``: on every address of this machine's namespace)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def wait_until(
    done: Callable[[], bool],
    timeout: float,
    what: str | Callable[[], str],
    processes: Mapping[str, subprocess.Popen[bytes]] | None = None,
    logs: Path | Callable[[], str] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``done`` until it holds, at most ``timeout`` seconds; meanwhile each of ``processes`` (by
    name) must keep running. A failure says which process exited (and its code) or what was waited
    for (``what``, or what it returns at that moment) and the limit, then the tails of ``logs``: the
    ``*.log`` files of a directory, or the text a callable returns."""
    deadline = time.monotonic() + timeout
    while not done():
        for name, process in (processes or {}).items():
            if process.poll() is not None:
                waited = what() if callable(what) else what
                raise AssertionError(
                    f"{name} exited with code {process.returncode} while waiting for {waited}{_tails(logs)}"
                )
        if time.monotonic() > deadline:
            waited = what() if callable(what) else what
            raise AssertionError(f"gave up after {timeout:g} s waiting for {waited}{_tails(logs)}")
        time.sleep(interval)


def _tails(logs: Path | Callable[[], str] | None) -> str:
    if logs is None:
        return ""
    return "\n" + (log_tails(logs) if isinstance(logs, Path) else logs())


def log_tails(directory: Path, size: int = 2500) -> str:
    """The last ``size`` bytes of each ``*.log`` in ``directory``, for a failure message."""
    return "\n".join(
        f"--- {log.name}\n{log.read_bytes()[-size:].decode(errors='replace')}"
        for log in sorted(directory.glob("*.log"))
    )


def die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that forked it exits. Tests start processes
    from pytest's main thread, so that is when pytest itself is gone (killed, say, by a time limit)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def why_unavailable() -> str | None:
    """Why namespaces cannot be made here, checked without making any; None if they may be."""
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed: cannot make network namespaces"
    if shutil.which("nsenter") is None:
        return "the 'nsenter' command (util-linux) is not installed: cannot run commands in namespaces"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    return None


@dataclass(frozen=True)
class End:
    """One end of a veth pair: its namespace (None: this machine's own), its name, and either an
    address with its prefix length (``10.231.0.1/24``) or a bridge to enslave it to."""

    namespace: str | None
    name: str
    address: str | None = None
    bridge: str | None = None


class Network:
    """Makes namespaces and links on request, named with a random tag of its own, and undoes them
    all on exit. Use as ``with Network() as net: ...``."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.links: list[str] = []  # every link made, by name; any left in this namespace is deleted

    def name(self, suffix: str) -> str:
        """A link name of this network's own (at most 15 characters, the kernel's limit)."""
        name = f"gst{self.tag}{suffix}"
        assert len(name) <= 15, name
        return name

    def __enter__(self) -> Network:
        reason = why_unavailable()
        if reason is not None:
            raise Unavailable(reason)
        return self

    def namespace(self, role: str) -> str:
        """A new namespace with ``lo`` up."""
        namespace = f"gst-{self.tag}-{role}"
        result = ip("netns", "add", namespace)
        if result.returncode != 0:
            raise Unavailable(f"this machine does not allow network namespaces: ip netns add: {result.stderr.strip()}")
        self.namespaces.append(namespace)
        must(ip("-n", namespace, "link", "set", "lo", "up"))
        return namespace

    def bridge(self, name: str, address: str) -> None:
        """A bridge in this machine's namespace, holding ``address`` (with its prefix length)."""
        result = ip("link", "add", name, "type", "bridge")
        if result.returncode != 0:
            raise Unavailable(f"this machine does not allow bridges: {result.stderr.strip()}")
        self.links.append(name)
        must(ip("addr", "add", address, "dev", name))
        must(ip("link", "set", name, "up"))

    def veth(self, left: End, right: End) -> None:
        """A veth pair between two ends, each given its address or bridge, and set up."""
        command = ["link", "add", left.name, *_in(left.namespace), "type", "veth", "peer", "name", right.name]
        self.links += [left.name, right.name]
        result = ip(*command, *_in(right.namespace))
        if result.returncode != 0:
            raise Unavailable(f"this machine does not allow veth links: {result.stderr.strip()}")
        for end in (left, right):
            where = ["-n", end.namespace] if end.namespace else []
            if end.address:
                must(ip(*where, "addr", "add", end.address, "dev", end.name))
            if end.bridge:
                must(ip(*where, "link", "set", end.name, "master", end.bridge))
            must(ip(*where, "link", "set", end.name, "up"))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for namespace in reversed(self.namespaces):
            # Anything still running in our namespaces is ours: end it by pid before deleting them.
            for pid in ip("netns", "pids", namespace).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            ip("netns", "del", namespace)
        for name in reversed(self.links):
            if ip("link", "show", name).returncode == 0:
                ip("link", "del", name)


def _in(namespace: str | None) -> list[str]:
    return ["netns", namespace] if namespace else []
