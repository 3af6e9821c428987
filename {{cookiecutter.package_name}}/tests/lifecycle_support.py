"""Shared helpers of the lifecycle tests: a head in its own process, and process accounting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import psutil
from demo_support import PROJECT

from {{ cookiecutter.package_name }} import the_sworker
from {{ cookiecutter.package_name }}.demo.local_grain import child_environment

SWORKER = "{{ cookiecutter.package_name }}.the_sworker"

#: What the ``fail`` mode's tasklet raises, after its call went through: a failure of the tasklet's own,
#: whatever the server.
TASKLET_FAILURE = "this tasklet fails on purpose, after its call"
#: A plain Grain head (no demo around it) that submits ``probe.TASKLET`` with ``probe.example``'s inputs:
#: ``slow`` runs 3000 tasklets, each holding its slot 50 ms after its call, and writes PROGRESS after
#: the first result; ``fail`` runs one that makes its call, then raises ``TASKLET_FAILURE``.
#: Arguments: mode, config, progress. SIGINT ends it through the demo's ``interrupt_on_sigint``: left to
#: trio, a KeyboardInterrupt may land inside a tasklet, which Grain 0.17 takes for the tasklet's failure.
HEAD_SCRIPT = f"""
import sys

import anyio
import grain.delayed
from grain.delayed import delayed, each
from grain.resource import Capacity

from {{ cookiecutter.package_name }} import probe
from {{ cookiecutter.package_name }}.demo.batch import interrupt_on_sigint

mode, config, progress = sys.argv[1:4]


@delayed
async def slow(argument):
    result = await probe.TASKLET.fn(argument)
    await anyio.sleep(0.05)
    return result


@delayed
async def failing(argument):
    await probe.TASKLET.fn(argument)
    raise RuntimeError({TASKLET_FAILURE!r})


async def batch():
    if mode == "fail":
        result = await (failing @ Capacity(1))(probe.example(0))
        print("RESULT", repr(result), flush=True)
        return
    async with anyio.create_task_group() as group:
        group.start_soon(interrupt_on_sigint)  # SIGINT ends this head, not a tasklet that Grain retries
        futures = [(slow @ Capacity(1))(probe.example(i)) for i in range(3000)]
        first = await futures[0]
        with open(progress, "w") as out:
            out.write(repr(first))
        await each(futures[1:])
        group.cancel_scope.cancel()


grain.delayed.run(batch, config_file=config)
"""


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition``; return the seconds it took, or fail naming ``what``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)
    return time.monotonic() - started


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def kill(processes: list[psutil.Process]) -> None:
    """End these processes if they are still there (what a failed test left, orphans among them).

    psutil checks that each pid is still the process seen before, not a newcomer with a reused pid.
    """
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass


def suspend(process: psutil.Process) -> None:
    """SIGSTOP ``process`` and wait until every thread of it is stopped.

    ``kill`` returns before that: a thread woken by a request meanwhile could still answer it.
    """
    process.suspend()
    wait_until(lambda: all(_stopped(thread.id) for thread in process.threads()), 5, f"{process.pid} stopped by SIGSTOP")


def _stopped(thread_id: int) -> bool:
    try:
        with open(f"/proc/{thread_id}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] in ("T", "t")
    except FileNotFoundError:
        return True  # the thread is gone


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return []


@contextmanager
def head_process(mode: str, config: Path, workdir: Path, env: Mapping[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Run ``HEAD_SCRIPT`` in ``mode`` as a head process."""
    with script_head(HEAD_SCRIPT, [mode, str(config), str(workdir / "progress")], workdir, env) as process:
        yield process


@contextmanager
def script_head(script: str, args: list[str], workdir: Path, env: Mapping[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Run a head ``script`` with ``args``, output in ``workdir/head.log``; end its session (by its pid) on
    exit, whatever happened."""
    with open(workdir / "head.log", "w") as log:  # the head writes to its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=PROJECT,
            env=child_environment(SWORKER, env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def listening_addresses(command: list[str], env: Mapping[str, str]) -> list[str]:
    """Start ``command``, wait until it listens, and return the addresses it listens on; then end it."""
    process = subprocess.Popen(
        command, cwd=PROJECT, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def addresses() -> list[str]:
            return [c.laddr.ip for c in psutil.Process(process.pid).net_connections("tcp") if c.status == "LISTEN"]

        wait_until(lambda: bool(addresses()), 20, f"{command[2]} listens")
        return addresses()
    finally:
        process.kill()
        process.wait()


def run_trio(function: Callable[[], Awaitable[object]]) -> None:
    """Run ``function`` under trio, as Grain does."""
    anyio.run(function, backend="trio")


@asynccontextmanager
async def start_and_connect() -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    """The sworker's instance and its client, entered as Grain enters them: the client, and the
    fields it was given (those the instance yielded, its name aside)."""
    async with the_sworker.grain_run_sworker() as yielded:
        fields: dict[str, Any] = dict(yielded)
        fields.pop("name")
        async with the_sworker.grain_context(**fields) as client:
            yield client, fields
