"""Run a server as a child process: free port, bounded readiness wait, sure teardown, a capped log.

Grain stops an sworker by cancelling it, so everything that must happen on the
way out lives in ``finally:`` and runs shielded, under its own time limit.
A worker may also be ended by a signal, and its server must not outlive it:
SIGTERM acts as SIGINT (Grain's worker then leaves the head and cancels the
sworker, so the ``finally:`` runs), and a worker killed outright takes its
server with it (see ``lifeline``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import shlex
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import BinaryIO

import anyio

from . import lifeline

#: Readiness (and an exit) is polled with a short, growing pause (a refused connect
#: costs microseconds): a server is seen within 10 ms of listening, not a second later.
FIRST_POLL_DELAY = 0.002
MAX_POLL_DELAY = 0.01
OUTPUT_TAIL_BYTES = 2000
#: The log file is rotated at this size, with one older file kept (``<log>.1``): a server
#: that prints without end (a traceback per malformed request) fills at most twice this.
LOG_MAX_BYTES = 1_000_000
#: The copy of the output ends this long after the server's process group is gone, at most
#: (sooner, unless something the server started in a session of its own holds the pipe).
OUTPUT_DRAIN_TIMEOUT = 1.0


class ServerStartError(RuntimeError):
    """The server exited or did not listen in time; the message holds its output's tail."""


def pick_free_port(host: str) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def fill_in(text: str, where: str, **places: object) -> str:
    """``text`` with its ``{name}`` placeholders filled in from ``places``; an unknown one is named."""
    try:
        return text.format(**places)
    except (KeyError, IndexError, ValueError) as exc:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
        unknown = [name for name in names if name not in places]
        detail = f"{_braced(unknown[0])} is not a placeholder" if unknown else str(exc)
        known = ", ".join(_braced(name) for name in places)
        raise ServerStartError(
            f"{where} {text!r}: {detail}; the placeholders are {known} (a brace meant literally is doubled)"
        ) from None


def _braced(name: str) -> str:
    return "{" + name + "}"


@contextmanager
def private_workdir(prefix: str) -> Iterator[Path]:
    """A new directory only this user can enter (0700), for one server instance; removed on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))  # mkdtemp makes it 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file that only this user can read (0600 from the start, never wider)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "w") as file:
        file.write(text)


@asynccontextmanager
async def running_server(
    command: Sequence[str],
    *,
    host: str,
    port: int,
    startup_timeout: float,
    stop_grace: float = 5.0,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    log_max_bytes: int = LOG_MAX_BYTES,
    pid_path: Path | None = None,
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Start ``command``, wait until ``host:port`` accepts connections, stop it on exit.

    The server runs in a session of its own, so the whole process group it may
    have spawned is signalled at teardown: SIGTERM, ``stop_grace`` seconds, SIGKILL.
    Its output (stdout and stderr) goes to ``log_path``, rotated at ``log_max_bytes``; its process
    id to ``pid_path`` while it runs (removed once it is reaped).
    """
    if isinstance(command, str):
        raise TypeError("the server command must be a list of arguments, never a shell string")
    with lifeline.sigterm_as_sigint():
        output = ServerOutput(log_path, log_max_bytes, command)
        try:
            process = _spawn(command, env, output)
        except (OSError, subprocess.SubprocessError) as exc:  # not found, not executable, ...
            raise ServerStartError(
                f"cannot start the server: {type(exc).__name__}: {exc}; command: {shlex.join(command)}"
            ) from exc
        watchdog = None
        try:
            _note_pid(pid_path, process.pid)
            watchdog = lifeline.Watchdog(process.pid, note=log_path)
            await _wait_until_listening(process, command, host, port, startup_timeout, output)
            yield process
        finally:
            with anyio.CancelScope(shield=True):
                await stop_process_group(process, stop_grace)
                _note_pid(pid_path, None)
                if watchdog is not None:
                    await anyio.to_thread.run_sync(watchdog.dismiss)  # it exits at once: a wait, not work
                await output.finished(OUTPUT_DRAIN_TIMEOUT)


def _note_pid(path: Path | None, pid: int | None) -> None:
    """Write ``pid`` to the pid file at ``path``, or remove that file when ``pid`` is None."""
    if path is None:
        return
    if pid is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(f"{pid}\n")


def _spawn(command: Sequence[str], env: Mapping[str, str] | None, output: ServerOutput) -> subprocess.Popen[bytes]:
    """Start the server from this thread, the event loop's, which outlives it.

    Linux's parent-death signal (``lifeline.die_with_parent``) is tied to the
    thread that forks: from a worker thread of anyio's pool (as
    ``anyio.open_process`` forks under trio), which exits when idle, it would
    kill the server 10 s after start. The fork takes a few milliseconds.
    """
    try:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=output.write_end,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
            preexec_fn=functools.partial(lifeline.die_with_parent, os.getpid()),
        )
    finally:
        output.writer_started()


async def stop_process_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate the process and its group, kill after ``grace`` seconds, reap it."""
    _signal_group(process.pid, signal.SIGTERM)
    if not await _exited(process, grace):
        _signal_group(process.pid, signal.SIGKILL)
        await _exited(process, grace)


async def _exited(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait up to ``seconds`` for the process to exit (and reap it); whether it did."""
    await _polled(lambda: process.poll() is not None, seconds)
    return process.returncode is not None


async def _polled(done: Callable[[], bool | Awaitable[bool]], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``done()`` (awaited if async), looking often at first: an exit, or a
    server that starts listening, sets no event to wait on. Whether ``done()`` came true in time."""
    delay = FIRST_POLL_DELAY
    with anyio.move_on_after(seconds):
        while True:
            result = done()
            if await result if inspect.isawaitable(result) else result:
                return True
            await anyio.sleep(delay)
            delay = min(delay * 2, MAX_POLL_DELAY)
    return False


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


async def _wait_until_listening(
    process: subprocess.Popen[bytes],
    command: Sequence[str],
    host: str,
    port: int,
    seconds: float,
    output: ServerOutput,
) -> None:
    async def listening() -> bool:
        if process.poll() is not None:
            await output.finished(OUTPUT_DRAIN_TIMEOUT)  # all it printed, up to its last words
            raise ServerStartError(
                f"server exited with code {process.returncode} before listening on "
                f"{host}:{port}; command: {shlex.join(command)}{output.tail()}"
            )
        try:
            stream = await anyio.connect_tcp(host, port)
        except OSError:
            return False
        await stream.aclose()
        return True

    if await _polled(listening, seconds):
        return
    raise ServerStartError(
        f"server did not listen on {host}:{port} within {seconds:g} s; command: {shlex.join(command)}{output.tail()}"
    )


class ServerOutput:
    """What the server prints, read from a pipe by a thread and copied to a log file of capped size.

    A thread, not a task: the copy goes on whatever the event loop does, so the
    server never blocks on a full pipe, and a start-up error can quote the last
    lines. The file is rotated at ``max_bytes`` with one older file kept, so a
    server that prints without end fills at most twice that; it is appended to
    (a later instance may get the same port, and so the same name) and written
    unbuffered, so an operator can ``tail -f`` it.
    """

    def __init__(self, path: Path | None, max_bytes: int, command: Sequence[str]) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._log: BinaryIO | None = None
        self._size = 0
        self._tail = b""
        self._lock = threading.Lock()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._log = open(path, "ab", buffering=0)  # closed by the copying thread, at its end
            except OSError as exc:
                raise ServerStartError(f"cannot write the server's log {path}: {exc}") from exc
            self._size = self._log.tell()
            self._write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(command)}\n".encode())
        try:
            self._read_end, self.write_end = os.pipe()
        except OSError:
            if self._log is not None:
                self._log.close()
            raise
        self._thread = threading.Thread(target=self._copy, name="server-output", daemon=True)

    def writer_started(self) -> None:
        """The server holds the write end now (or failed to start): the copy runs until every writer is gone."""
        os.close(self.write_end)
        self._thread.start()

    def tail(self) -> str:
        """The last lines printed, and where the rest is, for an error message."""
        with self._lock:
            text = self._tail.decode(errors="replace").strip()
        where = f"\n(full output: {self.path})" if self.path else ""
        return (f"\nlast server output:\n{text}" if text else "\n(the server printed nothing)") + where

    async def finished(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the copy to reach end of file (every writer gone)."""
        await _polled(lambda: not self._thread.is_alive(), seconds)

    def _copy(self) -> None:
        try:
            while chunk := os.read(self._read_end, 65536):
                with self._lock:
                    self._tail = (self._tail + chunk)[-OUTPUT_TAIL_BYTES:]
                self._write(chunk)
        finally:
            os.close(self._read_end)
            if self._log is not None:
                self._log.close()

    def _write(self, data: bytes) -> None:
        """Append to the log, rotating it whenever it would grow past the cap; stop logging if that fails."""
        try:
            while data and self._log is not None and self.path is not None:
                if self._size >= self._max_bytes:
                    self._log.close()
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                    self._log = open(self.path, "wb", buffering=0)  # closed by the copying thread, at its end
                    self._size = 0
                written = self._log.write(data[: self._max_bytes - self._size])
                if not written:
                    raise OSError("the log file takes no more")
                self._size += written
                data = data[written:]
        except OSError:
            # E.g. the disk is full: the server goes on unlogged, and the tail is still kept.
            log, self._log = self._log, None
            if log is not None:
                with contextlib.suppress(OSError):
                    log.close()
