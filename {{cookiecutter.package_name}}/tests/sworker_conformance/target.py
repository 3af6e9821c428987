"""What the kit checks: the sworker module, its probe, its environment and its config."""

from __future__ import annotations

import importlib
import inspect
import os
import tomllib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

Probe = Callable[..., Awaitable[object]]

#: How long grain_run_sworker may take to yield: the generated package's own server wait
#: (DEFAULT_STARTUP_TIMEOUT in the_sworker.py), so that a server that starts on Grain passes here.
DEFAULT_STARTUP_TIMEOUT = 60.0
#: How long a teardown may take after cancellation (the contract's "within 10 s").
DEFAULT_CLEANUP_LIMIT = 10.0
#: How long one probe call (or grain_context's start) may take on a live instance.
DEFAULT_CALL_TIMEOUT = 10.0
#: The limit within which a call on a stalled server must raise (rule 13), unless the author states
#: theirs: the generated packages' demo and kit runs use 10 s (their production default is an hour).
DEFAULT_CALL_LIMIT = 10.0
#: What the kit waits beyond the stated call limit before it calls a stalled call unbounded (rule 13).
CALL_LIMIT_SLACK = 2.0
#: What a module's verdict may take beyond its start-up, cleanup and call limits (the kit's own work,
#: the calls, and one overrun call at most).
VERDICT_SLACK = 15.0
Environment = Callable[[], AbstractContextManager[Mapping[str, str] | None]]


@dataclass
class Target:
    """One sworker module under test and how to exercise it."""

    module_name: str
    capacity: int = 1
    probe_name: str = ""
    environment_name: str = ""
    config_path: Path | None = None
    #: Bound on grain_run_sworker() start-up (rule 9).
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    #: Bound on each teardown after cancellation (rule 6).
    cleanup_limit: float = DEFAULT_CLEANUP_LIMIT
    #: Bound on one probe call and on grain_context's start.
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    #: The author's stated limit: a call on a stalled server raises within it (rule 13).
    call_limit: float = DEFAULT_CALL_LIMIT
    #: The environment variable the module reads its call limit from, if any: the kit sets it to
    #: ``call_limit`` while it runs the module.
    call_limit_env: str = ""
    #: The author chose to judge no call (--sworker-no-probe): rules 7, 8, 10 and 13 are then not judged on calls.
    no_probe_accepted: bool = False
    #: Longest event-loop stall tolerated while calls run (rule 7).
    stall_limit: float = 0.1
    #: Longest stall tolerated once, while grain_context starts (rule 7).
    start_stall_limit: float = 0.5
    #: Why the environment did not start, if it did not (every rule then says so).
    environment_error: str = ""
    _module: ModuleType | None = field(default=None, repr=False)

    @property
    def time_budget(self) -> float:
        """The longest a verdict on this module may take: start-up, cleanup and call limits, and some slack."""
        return self.startup_timeout + self.cleanup_limit + self.call_limit + VERDICT_SLACK

    def during_runs(self) -> Mapping[str, str]:
        """What the kit sets in the environment while it runs the module: the stated call limit, if asked."""
        return {self.call_limit_env: f"{self.call_limit:g}"} if self.call_limit_env else {}

    @property
    def module(self) -> ModuleType:
        """The module, imported by dotted name as Grain does (import errors surface as they are)."""
        if self._module is None:
            self._module = importlib.import_module(self.module_name)
        return self._module

    @property
    def probe(self) -> Probe | None:
        return load_object(self.probe_name) if self.probe_name else None

    def probe_takes_variant(self) -> bool:
        """Whether the probe accepts a second argument that varies its call (to spot crossed replies)."""
        probe = self.probe
        if probe is None:
            return False
        parameters = list(inspect.signature(probe).parameters.values())
        return len(parameters) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)

    def own_modules(self) -> tuple[str, ...]:
        """The top-level packages of the module and its probe: where a stall is theirs (rule 7)."""
        names = {self.module_name.split(".")[0]}
        if self.probe_name:
            names.add(self.probe_name.split(":")[0].split(".")[0])
        return tuple(sorted(names))

    @property
    def is_backendless(self) -> bool:
        config = getattr(self.module, "GRAIN_SWORKER_CONFIG", {})
        return bool(config.get("BACKENDLESS", False)) if isinstance(config, dict) else False

    @contextmanager
    def environment(self) -> Iterator[Mapping[str, str]]:
        """Run what the module needs beside it (e.g. a loopback service) with its env vars set."""
        factory: Environment = load_object(self.environment_name) if self.environment_name else nullcontext
        with factory() as env, environ(env or {}):
            yield env or {}


@dataclass(frozen=True)
class CallLimit:
    """A package's own call limit for the kit's runs of its own sworker (see the ``sworker_call_limit`` fixture)."""

    seconds: float
    #: The environment variable its client reads the limit from (the kit sets it while it runs the module).
    environment_variable: str = ""


def load_object(spec: str) -> Any:
    """``package.module:attribute`` -> the attribute."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{spec!r} is not in the form package.module:function")
    return getattr(importlib.import_module(module_name), attribute)


@contextmanager
def environ(extra: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``extra`` set for the block."""
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


@dataclass(frozen=True)
class WorkerConfig:
    """The [worker] section of a Grain config, as far as the kit reads it."""

    path: Path
    specialized_type: str
    res: dict[str, Any]
    script: dict[str, Any]

    @property
    def capacity(self) -> int:
        capacity = self.res.get("Capacity", {})
        return int(capacity.get("V", 1)) if isinstance(capacity, dict) else 1


def read_worker_config(path: Path) -> WorkerConfig | None:
    """The [worker] section of ``path``, or None when there is no such file or section."""
    if not path.is_file():
        return None
    document = tomllib.loads(path.read_text())
    worker = document.get("worker", {})
    if not isinstance(worker, dict) or "specialized_type" not in worker:
        return None
    return WorkerConfig(
        path=path,
        specialized_type=str(worker["specialized_type"]),
        res=dict(worker.get("res", {})),
        script=dict(worker.get("script", {})),
    )
