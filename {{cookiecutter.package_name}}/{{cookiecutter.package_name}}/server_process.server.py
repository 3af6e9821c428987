"""Run a server as a child process: free port, bounded readiness wait, sure teardown.

Grain stops an sworker by cancelling it, so everything that must happen on the
way out lives in ``finally:`` and runs shielded, under its own time limit.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from subprocess import DEVNULL, STDOUT
from typing import IO

import anyio
from anyio.abc import Process

#: Readiness is polled with a short, growing pause (a refused connect costs
#: microseconds): a server is seen within 10 ms of listening, not a second later.
FIRST_POLL_DELAY = 0.002
MAX_POLL_DELAY = 0.01
OUTPUT_TAIL_BYTES = 2000


class ServerStartError(RuntimeError):
    """The server exited or did not listen in time; the message holds its output's tail."""


def pick_free_port(host: str) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def running_server(
    command: Sequence[str],
    *,
    host: str,
    port: int,
    startup_timeout: float,
    stop_grace: float = 5.0,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Process]:
    """Start ``command``, wait until ``host:port`` accepts connections, stop it on exit.

    The server runs in a session of its own, so the whole process group it may
    have spawned is signalled at teardown: SIGTERM, ``stop_grace`` seconds, SIGKILL.
    """
    if isinstance(command, str):
        raise TypeError("the server command must be a list of arguments, never a shell string")
    with tempfile.TemporaryFile() as output:
        try:
            process = await anyio.open_process(
                list(command),
                stdin=DEVNULL,
                stdout=output,
                stderr=STDOUT,
                start_new_session=True,
                env=None if env is None else {**os.environ, **env},
            )
        except OSError as exc:  # not found, not executable, ...
            raise ServerStartError(
                f"cannot start the server: {type(exc).__name__}: {exc}; command: {shlex.join(command)}"
            ) from exc
        try:
            await _wait_until_listening(process, command, host, port, startup_timeout, output)
            yield process
        finally:
            with anyio.CancelScope(shield=True):
                await stop_process_group(process, stop_grace)


async def stop_process_group(process: Process, grace: float) -> None:
    """Terminate the process and its group, kill after ``grace`` seconds, reap it."""
    _signal_group(process.pid, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
    _signal_group(process.pid, signal.SIGKILL)
    with anyio.move_on_after(grace):
        await process.wait()


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


async def _wait_until_listening(
    process: Process,
    command: Sequence[str],
    host: str,
    port: int,
    seconds: float,
    output: IO[bytes],
) -> None:
    delay = FIRST_POLL_DELAY
    with anyio.move_on_after(seconds):
        while True:
            if process.returncode is not None:
                raise ServerStartError(
                    f"server exited with code {process.returncode} before listening on "
                    f"{host}:{port}; command: {shlex.join(command)}{_tail(output)}"
                )
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                await anyio.sleep(delay)
                delay = min(delay * 2, MAX_POLL_DELAY)
            else:
                await stream.aclose()
                return
    raise ServerStartError(
        f"server did not listen on {host}:{port} within {seconds:g} s; command: {shlex.join(command)}{_tail(output)}"
    )


def _tail(output: IO[bytes]) -> str:
    output.seek(0, os.SEEK_END)
    size = output.tell()
    output.seek(max(0, size - OUTPUT_TAIL_BYTES))
    text = output.read().decode(errors="replace").strip()
    return f"\nlast server output:\n{text}" if text else "\n(the server printed nothing)"
