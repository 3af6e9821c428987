"""The demo: a batch of tasklets through this sworker, on a real Grain on this machine.

Run ``python -m {{ cookiecutter.package_name }}.demo``. This process is the Grain head; it
starts Gnaw and, for a server sworker, a ``python -m grain.worker`` process,
and ends them all before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grain.delayed
from grain.delayed import each
from grain.resource import Capacity

from .. import DEFAULT_CAPACITY
from ..tasklet import square
from .environment import local_service
from .local_grain import local_grain

SWORKER = "{{ cookiecutter.package_name }}.the_sworker"
#: Environment variable that marks every process of one demo run.
RUN_MARK_ENV = "SWORKER_DEMO_RUN"


def run_batch(config_path: Path, xs: list[float]) -> tuple[list[float], float, float]:
    """Square every ``x`` through the sworker; return the results and the times to the first and the last."""
    results: list[float] = []
    started = time.perf_counter()
    first_result_after = last_result_after = 0.0

    async def batch() -> None:
        nonlocal first_result_after, last_result_after
        futures = [(square @ Capacity(1))(x) for x in xs]
        results.append(await futures[0])
        first_result_after = time.perf_counter() - started
        results.extend(await each(futures[1:]))
        last_result_after = time.perf_counter() - started

    grain.delayed.run(batch, config_file=str(config_path))
    return results, first_result_after, last_result_after


@contextmanager
def environ(extra: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``extra`` set for the duration of the block."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run tasklets through the sworker on a local Grain.")
    parser.add_argument("--tasks", type=int, default=100, help="how many tasklets to run (default 100)")
    parser.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY, help="instance capacity V")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line instead of text")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.capacity < 1:
        parser.error("--tasks and --capacity must be positive")

    xs = [float(i) for i in range(args.tasks)]
    started = time.perf_counter()
    # Every process the demo starts inherits this mark, so a test can prove none is left.
    run_mark = {RUN_MARK_ENV: secrets.token_hex(8)}
    with (
        environ(run_mark),
        local_service() as env,
        environ(env),
        local_grain(SWORKER, capacity=args.capacity, env=env) as grain,
    ):
        results, first_result_after, last_result_after = run_batch(grain.config_path, xs)
        pids = [pid for pid in (grain.gnaw_pid, grain.worker_pid) if pid]
    elapsed = time.perf_counter() - started
    wrong = [(x, r) for x, r in zip(xs, results, strict=False) if r != x * x]
    summary = {
        "tasks": len(results),
        "capacity": args.capacity,
        "wrong": len(wrong),
        "seconds": round(elapsed, 3),
        "first_result_seconds": round(first_result_after, 3),
        # Steady throughput is (tasks - 1) / (last - first): start-up left out.
        "last_result_seconds": round(last_result_after, 4),
        "pids": pids,
        "run_mark": run_mark[RUN_MARK_ENV],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for x, r in list(zip(xs, results, strict=False))[:5]:
            print(f"square({x:g}) = {r:g}")
        print(
            f"{len(results)} tasklets through {SWORKER} at capacity {args.capacity}: "
            f"{elapsed:.2f} s in all, first result after {first_result_after:.2f} s, "
            f"{len(wrong)} wrong; Gnaw and workers stopped."
        )
    return 1 if wrong or len(results) != len(xs) else 0


if __name__ == "__main__":
    sys.exit(main())
