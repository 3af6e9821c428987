"""The demo: a batch of tasklets through this sworker on a real Grain, here or on your cluster.

``python -m {{ cookiecutter.package_name }}.demo`` runs on this machine: this process is the
Grain head; it starts Gnaw and, for a server sworker, a ``python -m grain.worker`` process, and
ends them all before it exits. ``--config grain.cluster.toml --workers N`` is the smoke run on
a cluster (:mod:`.cluster`). Both share one batch (:mod:`.batch`) and one watch
(:mod:`.watch`): when a worker exits or the last instance is lost, the run stops within seconds
with the reason and the worker's log, and a failed run keeps its logs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from .. import DEFAULT_CAPACITY, probe
from .batch import BatchResult, per_instance_lines, run_batch, summary
from .cluster import (
    ClusterConfig,
    ClusterStage,
    ConfigError,
    config_problems,
    gnaws_listening_on,
    stop_gnaws,
    worker_log_pattern,
)
from .environment import local_service
from .local_grain import LocalGrainError, is_backendless, local_grain
from .watch import RunFailed, Tally, Watch, instances_of_this_head, log_tails

SWORKER = "{{ cookiecutter.package_name }}.the_sworker"
#: Environment variable that marks every process of one demo run.
RUN_MARK_ENV = "SWORKER_DEMO_RUN"
DEFAULT_WAIT = 300.0

#: Progress goes to stderr as it happens; the report (and ``--json``'s line) to stdout.
say = partial(print, file=sys.stderr, flush=True)


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


def run_here(
    args: argparse.Namespace, arguments: list[Any], tally: Tally, report: dict[str, Any], logs: Path
) -> BatchResult:
    """Gnaw (and a worker) on this machine, the head in this process; their config and logs in ``logs``."""
    # Every process the demo starts inherits this mark, so a test can prove none is left.
    run_mark = {RUN_MARK_ENV: secrets.token_hex(8)}
    report["run_mark"] = run_mark[RUN_MARK_ENV]
    with (
        environ(run_mark),
        local_service() as env,
        environ(env),
        local_grain(SWORKER, capacity=args.capacity, env=env, workdir=logs) as grain,
        instances_of_this_head() as instances,
    ):
        report["pids"] = [watched.process.pid for watched in grain.processes]
        worker_logs = [grain.worker.log] if grain.worker else []
        watch = Watch(
            instances, tally, expected=1, join_within=args.wait, processes=grain.processes, logs=lambda: worker_logs
        )
        try:
            return run_batch(grain.config_path, arguments, watch, pause=args.pause)
        except RunFailed as failure:
            failure.add_note(log_tails(watch.logs()))
            raise


def run_on_cluster(args: argparse.Namespace, arguments: list[Any], tally: Tally, report: dict[str, Any]) -> BatchResult:
    """The head here with the user's config; ``grain up`` submits the workers (:mod:`.cluster`)."""
    config = ClusterConfig.load(Path(args.config))
    backendless = is_backendless(SWORKER)
    workers = args.workers if args.workers is not None else (0 if backendless else 1)
    if problems := config_problems(config, SWORKER, workers, backendless):
        raise ConfigError(f"{config.path} cannot work:\n" + "\n".join(f"- {problem}" for problem in problems))
    report.update(config=str(config.path), workers=workers, capacity=config.worker.res.get("Capacity", {}).get("V"))
    if (countdown := config.countdown_seconds()) is not None:
        say(f"the workers leave {countdown:g} s after they start (walltime minus Grain's 3 minutes)")
    say(f"this process is the Grain head, listening on {config.head.listen}")
    stage = ClusterStage(config, SWORKER, workers, say)
    gnaws_before = gnaws_listening_on(config.head.listen)
    finished = False
    with environ(path_with_gnaw()), instances_of_this_head() as instances:
        watch = Watch(instances, tally, expected=max(workers, 1), join_within=args.wait, logs=stage.worker_logs)
        try:
            batch = run_batch(config.path, arguments, watch, pause=args.pause, stage=stage)
            finished = True
            return batch
        except RunFailed as failure:
            if watch.logs():
                failure.add_note(log_tails(watch.logs()))
            elif workers:
                failure.add_note(f"no worker log matches {worker_log_pattern(config.worker.log_file, stage.cwd)} yet")
            raise
        finally:
            stage.finish(failed=not finished)
            report["jobs"] = stage.job_ids
            # The Gnaw the head started would outlive it by its idle_quit.
            stop_gnaws(gnaws_listening_on(config.head.listen) - gnaws_before)


def path_with_gnaw() -> dict[str, str]:
    """``PATH`` with this Python's folder first if Gnaw is not on it: Grain's head starts ``gnaw``
    from ``PATH``, and the grain-scheduler wheel installs it beside the interpreter."""
    beside = Path(sys.executable).parent
    if shutil.which("gnaw") or not (beside / "gnaw").exists():
        return {}
    return {"PATH": os.pathsep.join([str(beside), os.environ.get("PATH", "")])}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run tasklets through the sworker on a real Grain: on this machine, or on your cluster "
        "with --config (this process is the head; grain up submits --workers N jobs)."
    )
    parser.add_argument("--tasks", type=int, default=100, help="how many tasklets to run (default 100)")
    parser.add_argument(
        "--capacity", type=int, help=f"instance capacity V on this machine (default {DEFAULT_CAPACITY})"
    )
    parser.add_argument("--config", help="your cluster's Grain config (e.g. grain.cluster.toml): the smoke run")
    parser.add_argument("--workers", type=int, help="with --config: worker jobs to submit with grain up")
    parser.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT, help=f"seconds to wait for the instances (default {DEFAULT_WAIT:g})"
    )
    parser.add_argument("--pause", type=float, default=0.0, help="seconds each tasklet holds its slot after its call")
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line")
    args = parser.parse_args(argv)
    if args.tasks < 1 or (args.capacity is not None and args.capacity < 1) or args.wait <= 0 or args.pause < 0:
        parser.error("--tasks, --capacity and --wait must be positive, --pause not negative")
    if args.config is None and args.workers is not None:
        parser.error("--workers goes with --config (on this machine the demo starts its one worker itself)")
    if args.config is not None and args.capacity is not None:
        parser.error("with --config, the capacity is the config's [worker.res] Capacity")
    if args.workers is not None and args.workers < 0:
        parser.error("--workers must not be negative")
    if args.config is None and args.capacity is None:
        args.capacity = DEFAULT_CAPACITY
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Started in the background by a shell, SIGINT is ignored: take it back, so that Ctrl-C or
    # `kill -INT` stops the run the clean way (Grain turns it into KeyboardInterrupt).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    arguments = [probe.example(i) for i in range(args.tasks)]
    started = time.perf_counter()
    report: dict[str, Any] = {"mode": "cluster" if args.config else "local", "capacity": args.capacity}
    tally = Tally(on_first_result=lambda name, after: say(f"first result after {after:.2f} s, from {name}"))
    failure, code = "", 1
    try:
        if args.config:
            batch = run_on_cluster(args, arguments, tally, report)
        else:
            report["logs"] = tempfile.mkdtemp(prefix="{{ cookiecutter.package_name }}-demo-")
            batch = run_here(args, arguments, tally, report, Path(report["logs"]))
    except ConfigError as exc:
        failure, code = str(exc), 2
    except (RunFailed, LocalGrainError) as exc:
        failure = "\n".join([str(exc), *getattr(exc, "__notes__", [])])
    except KeyboardInterrupt:
        failure, code = "interrupted", 130
    else:
        joined = batch.joined_seconds
        report.update(summary(batch, tally), joined_seconds=round(joined, 3) if joined is not None else None)
        if report["wrong"] or report["tasks"] != len(arguments):
            failure = f"{report['wrong']} wrong result(s) of {report['tasks']}; expected {len(arguments)} right ones"
    report["seconds"] = round(time.perf_counter() - started, 3)
    report["ok"] = not failure
    if failure:
        report.setdefault("tasks", tally.count())
        report["error"] = failure.splitlines()[0]
        # Only a local run has logs, and it never raises ConfigError: a failed run keeps them.
        say(f"demo failed: {failure}" + (f"\nlogs kept in {report['logs']}" if "logs" in report else ""))
    else:
        if "logs" in report:
            shutil.rmtree(report.pop("logs"), ignore_errors=True)
        print_report(arguments, batch, tally, report)
    if args.json:
        print(json.dumps(report))
    return code if failure else 0


def print_report(arguments: list[Any], batch: BatchResult, tally: Tally, report: dict[str, Any]) -> None:
    name = probe.TASKLET.fn.__name__
    for argument, result in list(zip(arguments, batch.results, strict=False))[:5]:
        print(f"{name}({argument!r}) = {result!r}")
    rate = report["steady_tasklets_per_second"]
    where = f"at capacity {report['capacity']}" if report["mode"] == "local" else f"from {report['config']}"
    print(
        f"{report['tasks']} tasklets through {SWORKER} {where} on {len(report['instances'])} instance(s): "
        f"{report['seconds']:.2f} s in all; first result after {report['first_result_seconds']:.2f} s, "
        f"last after {report['last_result_seconds']:.2f} s" + (f" ({rate:g}/s between them)" if rate else "") + "; "
        f"{report['wrong']} wrong; everything it started has stopped."
    )
    for line in per_instance_lines(tally):
        print(line)
