"""Drive a sworker module the way Grain 0.17 does: the building blocks, and a harness for tests.

``grain_run_sworker()`` is entered in a task of its own and parked until it is
cancelled (grain.util.as_daemon); ``name`` is popped and the other fields go
through msgpack (worker -> Gnaw -> head); ``grain_context(**fields)`` is entered
in another task, also torn down by cancellation. ``running_instance`` and
``running_client`` do that inside the caller's event loop, for a package's own
async tests (e.g. its tasklet on the shared client); the kit's checks make
their bounded runs in threads of their own (observation.py).
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType, TracebackType
from typing import Any

import anyio
import msgpack
import sniffio
from anyio.abc import TaskStatus

from .footprint import Footprint
from .rules import ContractViolation, Portability
from .target import Target


@dataclass
class Record:
    """One context manager the kit entered (an instance, or a client) and what became of it."""

    label: str
    yielded: Any = None
    started: bool = False
    started_in: float | None = None
    start_error: AssertionError | None = None
    teardown_began: float | None = None
    exited_at: float | None = None

    @property
    def name(self) -> Any:
        return self.yielded.get("name") if isinstance(self.yielded, dict) else None

    @property
    def fields(self) -> dict[str, Any]:
        """The fields as yielded, without ``name`` (what Grain sends to the head)."""
        return {k: v for k, v in self.yielded.items() if k != "name"} if isinstance(self.yielded, dict) else {}

    @property
    def teardown_seconds(self) -> float | None:
        if self.teardown_began is None or self.exited_at is None:
            return None
        return self.exited_at - self.teardown_began


def current_loop() -> str:
    return sniffio.current_async_library()


def needs_asyncio(exc: BaseException) -> bool:
    """Whether ``exc`` is what asyncio-only code raises under trio."""
    for error in walk_errors(exc):
        text = f"{type(error).__module__}.{type(error).__name__}: {error}"
        if "no running event loop" in text or "no current event loop" in text or text.startswith("asyncio."):
            return True
        if "written for some other framework like asyncio" in text:  # trio, given an asyncio future to wait on
            return True
        if type(error).__name__ == "AsyncLibraryNotFoundError":
            return True
    return False


def needs_trio(exc: BaseException) -> bool:
    """Whether ``exc`` is what trio-only code raises under asyncio.

    trio's own functions, outside a trio run, fail in many ways: ``RuntimeError: must be
    called from async context``, ``AttributeError: 'RunContext' object has no attribute
    'runner'``, a bad yield to asyncio. What they share is where they were raised: in trio.
    """
    for error in walk_errors(exc):
        text = str(error)
        if type(error).__module__.startswith("trio") or "must be called from async context" in text:
            return True
        if "trio" in text and "bad yield" in text:
            return True
        if _raised_in(error, "trio"):
            return True
    return False


#: What a module keeps at module level that is no object of its own making (functions, classes, constants).
_NOT_STATE = (ModuleType, type, FunctionType, BuiltinFunctionType, MethodType, str, bytes, int, float, bool)


def held_at_module_level(exc: BaseException, own_modules: tuple[str, ...]) -> str:
    """The module-level name ("package.module._client") of an object of the module's own packages that the
    failing code went through (``self`` in a frame of ``exc``'s traceback), or "".

    Such an object outlives an event loop: made in the kit's trio run, it is used again in its asyncio run.
    """
    held: dict[int, str] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not any(name == own or name.startswith(own + ".") for own in own_modules):
            continue
        for attribute, value in list(vars(module).items()):
            if value is None or isinstance(value, _NOT_STATE) or attribute.startswith("__"):
                continue
            held.setdefault(id(value), f"{name}.{attribute}")
            for inner in list(getattr(value, "__dict__", {}).values()):  # e.g. a wrapper's SDK client
                held.setdefault(id(inner), f"{name}.{attribute}")
    for error in walk_errors(exc):
        traceback = error.__traceback__
        while traceback is not None:
            owner = traceback.tb_frame.f_locals.get("self")
            if owner is not None and id(owner) in held:
                return held[id(owner)]
            traceback = traceback.tb_next
    return ""


def _raised_in(error: BaseException, package: str) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in ``package``."""
    traceback = innermost_traceback(error)
    if traceback is None:
        return False
    module = str(traceback.tb_frame.f_globals.get("__name__", ""))
    return module == package or module.startswith(package + ".")


def innermost_traceback(error: BaseException) -> TracebackType | None:
    """The last entry of ``error``'s traceback: where it was raised."""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback


def walk_errors(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        for linked in (error.__cause__, error.__context__):
            if linked is not None:
                stack.append(linked)


@contextmanager
def unwrapped_groups() -> Iterator[None]:
    """Re-raise a kit failure (or a lone error) from inside task-group exception groups as itself."""
    try:
        yield
    except BaseExceptionGroup as group:
        for error in walk_errors(group):
            if isinstance(error, AssertionError):
                raise error from None
        leaves = [e for e in walk_errors(group) if not isinstance(e, BaseExceptionGroup)]
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


def first_violation(exc: BaseException) -> ContractViolation | None:
    """The ContractViolation inside ``exc`` (which may be an exception group)."""
    for error in walk_errors(exc):
        if isinstance(error, ContractViolation):
            return error
    return None


def describe(exc: BaseException) -> str:
    """``Type: message`` of the innermost meaningful exception (groups unwrapped), on one line."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in exc.exceptions[:3])
    text = " ".join(str(exc).split())
    if not text and exc.__cause__ is not None:
        return f"{type(exc).__name__} (from {describe(exc.__cause__)})"
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify(exc: BaseException, what: str, loop: str) -> ContractViolation | Portability | None:
    """What an error from the module during ``what`` means under ``loop``, where that does not depend on ``what``.

    The violation inside it, if any; under trio, asyncio-only code breaks Rule 7; under asyncio,
    trio-only code is portability. None for any other error: the caller says what it means there.
    """
    if (violation := first_violation(exc)) is not None:
        return violation
    if loop == "trio" and needs_asyncio(exc):
        raised = describe(exc).rstrip(".")
        return ContractViolation(7, f"{what} needs asyncio: under trio, which Grain runs, it raised {raised}.")
    if loop == "asyncio" and needs_trio(exc):
        return Portability(f"{what} needs trio: under asyncio it raised {describe(exc)}")
    return None


@contextmanager
def step(rule: int, what: str) -> Iterator[None]:
    """Turn an error from the module during ``what`` into a violation of ``rule`` (unless ``classify`` says more)."""
    try:
        yield
    except (Exception, BaseExceptionGroup) as exc:
        loop = current_loop()
        raise classify(exc, what, loop) or ContractViolation(
            rule, f"{what} raised {describe(exc)} (under {loop})."
        ) from None


def msgpack_round_trip(fields: dict[str, Any], module_name: str) -> dict[str, Any]:
    """The fields as the head receives them: packed as grain.worker sends them, unpacked as the head does."""
    packed = msgpack.Packer().pack({"cmd": "SRG", "obj": {"_stype": module_name, **fields}})
    unpacker = msgpack.Unpacker()
    unpacker.feed(packed)
    message = next(iter(unpacker))
    received: dict[str, Any] = message["obj"]
    received.pop("_stype")
    return received


def require_async_cm(value: Any, call: str) -> AbstractAsyncContextManager[Any]:
    """``value`` if it is an async context manager, else a violation of rule 2."""
    if inspect.iscoroutine(value):
        value.close()
    if not (hasattr(type(value), "__aenter__") and hasattr(type(value), "__aexit__")):
        raise ContractViolation(
            2,
            f"{call} returned {type(value).__name__}, not an async context manager; Grain enters it with 'async with'.",
        )
    return value  # type: ignore[no-any-return]


async def daemon(
    record: Record,
    factory: Callable[[], AbstractAsyncContextManager[Any]],
    contain_crash: bool = False,
    *,
    task_status: TaskStatus[Any],
) -> None:
    """Enter ``factory()`` as Grain does (util.as_daemon): hand on what it yields, park until cancelled.

    An error before it yields goes to the caller of ``group.start()``. One after it yielded (its
    server died, its cleanup failed) ends the task group, unless ``contain_crash`` (the kit's
    runs: Grain would log it, and it is not judged).
    """
    try:
        async with factory() as value:
            record.yielded = value
            record.started = True
            task_status.started(value)
            try:
                await anyio.sleep_forever()
            finally:
                record.teardown_began = time.monotonic()
    except anyio.get_cancelled_exc_class():
        raise
    except (Exception, BaseExceptionGroup, SystemExit):
        if not record.started or not contain_crash:
            raise
    finally:
        record.exited_at = time.monotonic()


def require_no_arguments(module: Any) -> None:
    """Rule 2: Grain calls ``grain_run_sworker()`` with no arguments."""
    function = getattr(module, "grain_run_sworker", None)
    if not callable(function):
        raise ContractViolation(2, f"{module.__name__} has no callable grain_run_sworker; Grain calls it.")
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return  # no signature to read (a builtin): let the call say
    required = [
        parameter.name
        for parameter in parameters
        if parameter.default is parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
    if required:
        raise ContractViolation(
            2, f"grain_run_sworker requires {required}; Grain calls grain_run_sworker() with no arguments."
        )


def start_timed_out(limit: float) -> ContractViolation:
    """Rule 9: grain_run_sworker() neither yielded nor raised within ``limit`` seconds."""
    return ContractViolation(
        9,
        f"grain_run_sworker() neither yielded nor raised within {limit:g} s, the kit's start-up limit "
        "(--sworker-startup-timeout); under Grain the worker, then the head, would wait with no error anywhere.",
    )


def context_timed_out(limit: float) -> ContractViolation:
    """Rule 5: grain_context(**fields) did not yield within ``limit`` seconds."""
    return ContractViolation(
        5, f"grain_context(**fields) did not yield within {limit:g} s (--sworker-call-timeout); the head would hang."
    )


@asynccontextmanager
async def running_instance(target: Target) -> AsyncIterator[Record]:
    """Enter ``grain_run_sworker()`` as Grain does; tear it down by cancellation on exit.

    Start-up is bounded by ``target.startup_timeout`` (rule 9); what the module left behind
    (child processes, listening sockets) is killed once its teardown is over.
    """
    module = target.module
    require_no_arguments(module)
    record = Record("the instance")
    before = Footprint.now()
    try:
        with unwrapped_groups():
            async with anyio.create_task_group() as group:
                try:
                    with anyio.fail_after(target.startup_timeout):
                        with step(9, "grain_run_sworker() during start-up"):
                            await group.start(
                                daemon,
                                record,
                                lambda: require_async_cm(module.grain_run_sworker(), "grain_run_sworker()"),
                            )
                except TimeoutError:
                    raise start_timed_out(target.startup_timeout) from None
                try:
                    yield record
                finally:
                    group.cancel_scope.cancel()
    finally:
        Footprint.reap_since(before)


@asynccontextmanager
async def running_client(target: Target, fields: dict[str, Any]) -> AsyncIterator[Any]:
    """Enter ``grain_context(**fields)`` in a task of its own, as the head does; cancel it on exit.

    Its start is bounded by ``target.call_timeout``, as in the kit's runs.
    """
    module = target.module
    with unwrapped_groups():
        async with anyio.create_task_group() as group:
            try:
                with anyio.fail_after(target.call_timeout):
                    with step(5, "grain_context(**fields) while starting"):
                        client = await group.start(
                            daemon,
                            Record("the client"),
                            lambda: require_async_cm(module.grain_context(**fields), "grain_context(**fields)"),
                        )
            except TimeoutError:
                raise context_timed_out(target.call_timeout) from None
            try:
                yield client
            finally:
                group.cancel_scope.cancel()


async def call_probe(target: Target, client: Any, variant: int = 0, *, bounded: bool = True) -> object:
    """One probe call, bounded by ``target.call_timeout`` (unless the caller bounds it itself)."""
    probe = target.probe
    assert probe is not None
    with anyio.fail_after(target.call_timeout) if bounded else nullcontext():
        if target.probe_takes_variant():
            return await probe(client, variant)
        return await probe(client)
