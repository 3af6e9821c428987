"""One benchmark measurement in a fresh process; prints one JSON line.

Run by bench/run.py with PYTHONPATH holding a baked package and bench/:

    driver.py grain --harness PKG --sworker MOD --tasklet MOD:NAME --capacity V --tasks N [--env MOD:NAME]
    driver.py readiness --package PKG --repeats N
    driver.py client --package PKG --capacity V [--calls N] [--with-floor]

Settings reach the head, the worker and the server through this process's environment
(bench/run.py sets e.g. ``<PKG>_DEMO_DELAY_MS`` or ``<PKG>_MAX_CONCURRENT`` there).
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

FLOORS = Path(__file__).resolve().parent / "floors"
#: Rounds of client calls (after a warm-up), of which the median is reported.
ROUNDS = 5


def load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def measure_grain(args: argparse.Namespace) -> dict[str, float]:
    import grain.delayed
    from grain.delayed import each
    from grain.resource import Capacity

    local_grain = importlib.import_module(f"{args.harness}.demo.local_grain")
    environ = importlib.import_module(f"{args.harness}.demo.run").environ
    tasklet = load(args.tasklet)
    environment = load(args.env)() if args.env else nullcontext({})
    xs = [float(i) for i in range(args.tasks)]
    timings: dict[str, float] = {}

    async def batch() -> None:
        futures = [(tasklet @ Capacity(1))(x) for x in xs]
        first = await futures[0]
        timings["first"] = time.perf_counter()
        rest = await each(futures[1:])
        timings["end"] = time.perf_counter()
        assert [first, *rest] == [x * x for x in xs], "wrong results"

    with (
        environment as env,
        environ(env),
        local_grain.local_grain(args.sworker, capacity=args.capacity, env=env) as g,
    ):
        started = time.perf_counter()
        grain.delayed.run(batch, config_file=str(g.config_path))
    steady = (args.tasks - 1) / (timings["end"] - timings["first"]) if args.tasks > 1 else 0.0
    return {
        "first_result_s": timings["first"] - started,
        "total_s": timings["end"] - started,
        "steady_per_s": steady,
        "per_tasklet_ms": 1000 * (timings["end"] - started) / args.tasks,
    }


def measure_readiness(args: argparse.Namespace) -> dict[str, float]:
    """Time from the server listening to grain_run_sworker yielding, with a server that stamps its listen."""
    import anyio

    sworker = importlib.import_module(f"{args.package}.the_sworker")
    latencies = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.repeats):
            stamp = Path(tmp) / f"stamp{index}"
            sworker.SERVER_COMMAND = [
                sys.executable,
                str(FLOORS / "listen_stamp.py"),
                "{host}",
                "{port}",
                str(stamp),
            ]

            async def once() -> float:
                async with sworker.grain_run_sworker():
                    return time.time()

            latencies.append(anyio.run(once, backend="trio") - float(stamp.read_text()))
    return {
        "readiness_median_ms": 1000 * statistics.median(latencies),
        "readiness_max_ms": 1000 * max(latencies),
    }


def measure_client(args: argparse.Namespace) -> dict[str, float]:
    """Calls per second through a sworker's client alone (no Grain): what the client and server cost.

    The calls run in rounds after a warm-up; the median round is reported, so a burst of
    load from elsewhere on the machine moves it less than it would one long run. Besides the
    wall time, this process's CPU time per call: the client's own cost, which waiting for
    the server (in another process) does not inflate. With ``--with-floor``, the floor's
    minimal client (bench/floors/same_server.py) makes calls to the same server, its rounds
    taking turns with the generated client's: like for like, at the same moments.
    """
    import anyio

    sworker = importlib.import_module(f"{args.package}.the_sworker")
    local_service = importlib.import_module(f"{args.package}.demo.environment").local_service
    environ = importlib.import_module(f"{args.package}.demo.run").environ
    per_round = max(args.capacity, args.calls // ROUNDS // args.capacity * args.capacity)

    async def one_round(client: Any) -> tuple[float, float]:
        async def worker(count: int) -> None:
            for i in range(count):
                assert await client.square(float(i)) == float(i) * float(i), "wrong result"

        started, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as group:
            for _ in range(args.capacity):
                group.start_soon(worker, per_round // args.capacity)
        return per_round / (time.perf_counter() - started), (time.process_time() - cpu) / per_round

    async def main() -> dict[str, list[tuple[float, float]]]:
        rounds: dict[str, list[tuple[float, float]]] = {"client": [], "floor": []}
        async with sworker.grain_run_sworker() as yielded:
            fields = {key: value for key, value in yielded.items() if key != "name"}
            async with sworker.grain_context(**fields) as client, floor_client(fields) as floor:
                clients = {"client": client, **({"floor": floor} if floor else {})}
                for each in clients.values():
                    await one_round(each)  # warm-up: every connection open
                for _ in range(ROUNDS):
                    for name, each in clients.items():
                        rounds[name].append(await one_round(each))
        return rounds

    @asynccontextmanager
    async def floor_client(fields: dict[str, Any]) -> AsyncIterator[Any]:
        """The floor's client on the same server (``--with-floor``), else None."""
        if not args.with_floor:
            yield None
            return
        from floors.same_server import grain_context

        async with grain_context(str(fields["host"]), int(fields["port"]), str(fields["secret"])) as floor:
            yield floor

    with local_service() as env, environ(env):
        rounds = anyio.run(main, backend="trio")
    measured = {}
    for name, found in rounds.items():
        if found:
            calls_per_s = statistics.median(r[0] for r in found)
            measured[f"{name}_calls_per_s"] = calls_per_s
            measured[f"{name}_us_per_call"] = 1e6 / calls_per_s
            measured[f"{name}_cpu_us_per_call"] = 1e6 * statistics.median(r[1] for r in found)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    g = sub.add_parser("grain")
    g.add_argument("--harness", required=True)
    g.add_argument("--sworker", required=True)
    g.add_argument("--tasklet", required=True)
    g.add_argument("--capacity", type=int, required=True)
    g.add_argument("--tasks", type=int, required=True)
    g.add_argument("--env", default="")
    r = sub.add_parser("readiness")
    r.add_argument("--package", required=True)
    r.add_argument("--repeats", type=int, default=10)
    c = sub.add_parser("client")
    c.add_argument("--package", required=True)
    c.add_argument("--capacity", type=int, required=True)
    c.add_argument("--calls", type=int, default=400)
    c.add_argument("--with-floor", action="store_true", help="also the floor's minimal client, same server")
    args = parser.parse_args()
    measure = {"grain": measure_grain, "readiness": measure_readiness, "client": measure_client}[args.mode]
    result = measure(args)
    print("BENCH " + json.dumps(result))


if __name__ == "__main__":
    main()
