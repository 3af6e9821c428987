"""One batch of tasklets through the sworker, with this process as the Grain head.

Both demos run it, the one on this machine and the smoke run on a cluster:
``grain.delayed.run`` makes this process the head, a :class:`~.watch.Watch` runs beside the
batch, and each tasklet records on which instance its result came back, and when.
"""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import anyio
import grain.delayed
from grain import GVAR
from grain.delayed import delayed, each
from grain.resource import Capacity

from .. import probe
from .watch import RunFailed, Tally, Watch


async def _recorded(argument: Any, tally: Tally, pause: float) -> Any:
    """The package's tasklet (``probe.TASKLET``), noting where its result came from (or what went wrong there)."""
    instance = str(GVAR.instance)
    try:
        result = await probe.TASKLET.fn(argument)
    except Exception as exc:
        tally.error(instance, exc)
        raise
    tally.result(instance)
    if pause > 0:
        await anyio.sleep(pause)  # holds the instance's slot, as a longer computation would
    return result


#: Submitted as ``(recorded @ Capacity(1))(argument, tally, pause)``: a resource without ``N``,
#: so it runs on the head against the sworker; its arguments are never pickled.
recorded = delayed(_recorded)


class Stage(Protocol):
    """What a run does on the head around the batch (the cluster's: submit, then stop, workers)."""

    async def before(self, watch: Watch) -> None: ...

    async def after(self, watch: Watch) -> None: ...


@dataclass
class BatchResult:
    """The results in submission order, and the tally of who produced them when."""

    arguments: list[Any]
    results: list[Any] = field(default_factory=list)
    joined_seconds: float | None = None

    def wrong(self) -> list[tuple[Any, Any]]:
        """The (argument, result) pairs that ``probe.check`` finds wrong."""
        return [(a, r) for a, r in zip(self.arguments, self.results, strict=False) if not _right(a, r)]


def _right(argument: Any, result: Any) -> bool:
    try:
        probe.check(argument, result)
    except AssertionError:
        return False
    return True


def run_batch(
    config: Path, arguments: list[Any], watch: Watch, *, pause: float = 0.0, stage: Stage | None = None
) -> BatchResult:
    """Run the batch on a head made from ``config``; :class:`RunFailed` says why it could not finish."""
    batch = BatchResult(arguments)
    tally = watch.tally

    async def root() -> None:
        head_started = time.perf_counter()
        async with anyio.create_task_group() as group:
            group.start_soon(watch.run)
            group.start_soon(interrupt_on_sigint)
            if stage is not None:
                await stage.before(watch)
                batch.joined_seconds = time.perf_counter() - head_started
            tally.started = time.perf_counter()
            futures = [(recorded @ Capacity(1))(argument, tally, pause) for argument in arguments]
            batch.results.extend(await each(futures))
            group.cancel_scope.cancel()
        if stage is not None:
            await stage.after(watch)

    try:
        grain.delayed.run(root, config_file=str(config))
    except BaseException as exc:
        leaves = list(_leaves(exc))
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            raise KeyboardInterrupt from exc  # Ctrl-C, wherever in the head's tasks it landed
        failed = next((leaf for leaf in leaves if isinstance(leaf, RunFailed)), None)
        if failed is not None:
            raise failed from None
        errors = [leaf for leaf in leaves if isinstance(leaf, Exception)]
        if not errors:
            raise  # SystemExit, or a cancellation: not ours to explain
        raise RunFailed(_head_crash(errors[0], tally)) from exc
    return batch


async def interrupt_on_sigint() -> NoReturn:
    """Ctrl-C (and SIGTERM, which acts as it) raises KeyboardInterrupt here, in the head's own task.

    Left to trio, it lands in whatever task runs at that moment: inside a tasklet, Grain 0.17's head
    takes it for the tasklet's failure (``execf`` catches BaseException) and the run goes on.
    """
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            break
    raise KeyboardInterrupt


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _head_crash(exc: Exception, tally: Tally) -> str:
    """Why the head stopped; for Grain's own crash on a dropped instance, that instance and its tasklets' last error."""
    where = traceback.extract_tb(exc.__traceback__)
    place = f" in {Path(where[-1].filename).name}, {where[-1].name}()" if where else ""
    message = f"the Grain head stopped with {type(exc).__name__}: {exc}{place}"
    if isinstance(exc, KeyError) and "remote_exer" in place:
        instance = exc.args[0] if exc.args else None
        if isinstance(instance, str) and (errors := tally.errors_on([instance])):
            # Grain 0.17 drops an instance after three failed tasklets; at times its head then runs one
            # more tasklet on it and crashes instead of waiting: the instance is lost all the same.
            return f"{message}, as it dropped the sworker instance {instance} it had lost\n{errors}"
        message += (
            "\nGrain 0.17 crashes so when it runs a tasklet on an instance that is gone (dropped as its "
            "tasklets were being re-dispatched), or a tasklet that asks for Cores/Node on a sworker "
            "(see Troubleshooting in the README)"
        )
    return message


def summary(batch: BatchResult, tally: Tally) -> dict[str, Any]:
    """The batch in numbers; times are seconds since the batch was submitted."""
    finished = [t for times in tally.results.values() for t in times]
    first = min(finished, default=0.0)
    last = max(finished, default=0.0)
    steady = (len(finished) - 1) / (last - first) if len(finished) > 1 and last > first else None
    return {
        "tasks": len(batch.results),
        "wrong": len(batch.wrong()),
        "instances": sorted(tally.results),
        "per_instance": {name: len(times) for name, times in sorted(tally.results.items())},
        "first_result_seconds": round(first, 3),
        "last_result_seconds": round(last, 3),
        "steady_tasklets_per_second": round(steady, 1) if steady is not None else None,
        "tasklet_errors": sum(len(errors) for errors in tally.errors.values()),
    }


def per_instance_lines(tally: Tally) -> list[str]:
    """One line per instance: how many results, and when its first and last came."""
    lines = []
    for name, times in sorted(tally.results.items()):
        errors = len(tally.errors.get(name, []))
        lines.append(
            f"  {name}: {len(times)} result(s), first after {min(times):.2f} s, last after {max(times):.2f} s"
            + (f", {errors} tasklet error(s)" if errors else "")
        )
    return lines
