"""A Grain head for the real-Grain proofs: ``python grain_head.py --config grain.toml --scenario calls``.

It runs tasklets on the configured sworker with ``grain.delayed.run`` and prints
one JSON line: what the tasklets returned and how long the calls took.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.kit.sworkers, from anywhere

import grain.delayed
import trio
from grain import GVAR
from grain.delayed import delayed, each
from grain.resource import Capacity


@delayed
async def echo(x: str) -> object:
    return await GVAR.context.echo(x)


@delayed
async def token() -> object:
    return getattr(GVAR.context, "token", None)


def stop_service(how: str = "exit") -> None:
    """Make the echo service die under its client: exit at once, reset every connection first, or stop (SIGSTOP)."""
    host, _, port = os.environ["KIT_ECHO_ADDRESS"].rpartition(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(json.dumps({"op": how}).encode() + b"\n")
    time.sleep(0.3)


def pause_redis(milliseconds: int) -> None:
    """CLIENT PAUSE on the redis server (KIT_REDIS_URL): every command waits that long (a busy server)."""
    host_port = os.environ["KIT_REDIS_URL"].split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    words = [b"CLIENT", b"PAUSE", str(milliseconds).encode()]
    command = f"*{len(words)}\r\n".encode() + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(command)
        assert sock.recv(100).startswith(b"+OK"), "CLIENT PAUSE refused"


class LagWatch:
    """The longest the head's event loop went without running a task (a blocked loop), while it runs."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        while True:
            before = trio.current_time()
            await trio.sleep(0.005)
            self.worst = max(self.worst, trio.current_time() - before - 0.005)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument(
        "--scenario", default="calls", choices=["calls", "dead", "reset", "token", "stall", "busy_redis"]
    )
    parser.add_argument("--tasks", type=int, default=4)
    args = parser.parse_args()
    report: dict[str, object] = {}

    async def calls(before: Callable[[], None] | None = None) -> None:
        lag = LagWatch()
        if before is not None:
            before()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lag.run)
            started = time.perf_counter()
            report["results"] = list(await each(*[(echo @ Capacity(1))(f"call-{i}") for i in range(args.tasks)]))
            report["seconds"] = round(time.perf_counter() - started, 3)
            nursery.cancel_scope.cancel()
        report["max_lag"] = round(lag.worst, 3)

    async def dead(how: str = "exit") -> None:
        first = await (echo @ Capacity(1))("before")
        stop_service(how)
        report["results"] = [first, await (echo @ Capacity(1))("after")]

    async def get_token() -> None:
        report["results"] = [await (token @ Capacity(1))()]

    scenarios = {
        "calls": calls,
        "dead": dead,
        "reset": functools.partial(dead, "reset"),
        "stall": functools.partial(dead, "stop"),
        "token": get_token,
        "busy_redis": functools.partial(calls, functools.partial(pause_redis, 300)),
    }
    grain.delayed.run(scenarios[args.scenario], config_file=args.config)
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
