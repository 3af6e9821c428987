"""A module's verdicts, rule by rule and event loop by event loop: what the plugin's tests ask.

The trio run (what Grain runs) always comes first; the asyncio run (portability)
leaves out whatever failed or overran under trio, and is not made at all when
the time budget has no room for it. All of a module's runs share one budget:
start-up limit + cleanup limit + call limit + ``VERDICT_SLACK`` seconds from the first run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import checks
from .checks import CALL_RULES
from .instance import describe
from .observation import Observation, Plan, run_observation
from .rules import CouldNotJudge
from .target import Target


class Judge:
    """Makes (once) and keeps one module's observations; ``verdict`` judges one rule."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.observations: dict[str, Observation] = {}
        self.started_at: float | None = None
        self._import_error: str | None = None
        self.probe_error = ""
        if target.probe_name:
            try:
                target.probe  # noqa: B018  (loads it)
            except Exception as exc:  # judged without it; the rules that need it say why
                self.probe_error = f"the probe {target.probe_name} does not load: {describe(exc)}"
                target.probe_name = ""

    @property
    def budget_deadline(self) -> float:
        if self.started_at is None:
            self.started_at = time.monotonic()
        return self.started_at + self.target.time_budget

    def observation(self, loop: str) -> Observation:
        """The run under ``loop``, made the first time it is asked for (trio's always first)."""
        if loop not in self.observations:
            if loop != "trio":
                self.observation("trio")
            plan = self._plan(loop)
            self.observations[loop] = run_observation(self.target, loop, plan, self.budget_deadline)
        return self.observations[loop]

    def _plan(self, loop: str) -> Plan:
        if loop == "trio":
            return Plan()
        trio = self.observations["trio"]
        prefix = f"not run under {loop}"
        if trio.kit_error:
            return Plan(why_not=f"{prefix}: the kit failed under trio")
        if trio.abandoned is not None:
            return Plan(
                why_not=f"{prefix}: under trio the kit stopped waiting for {trio.abandoned.label}, and it does not "
                "repeat a wait it has judged",
            )
        if trio.start_error is not None or trio.instance is None or not trio.instance.started:
            return Plan(why_not=f"{prefix}: the module did not start under trio")
        left = self.budget_deadline - time.monotonic()
        if left < 1.5 * trio.seconds + 1.0:
            return Plan(
                why_not=f"{prefix}: the trio run took {trio.seconds:.0f} s and {left:.0f} s are left of the kit's "
                f"time budget for this module ({self.target.time_budget:g} s)",
            )
        if trio.calls_hung or trio.probe_error:
            return Plan(calls=False, why_fewer=f"{prefix}: the probe calls did not finish under trio")
        endings = tuple(ending for ending, result in trio.dead.items() if not result.broken and not result.not_judged)
        why = ""
        if any(result.broken for result in trio.dead.values()):
            endings, why = (), f"{prefix}: Rule 10 failed under trio already"
        elif not endings:
            why = f"{prefix}: the dead-server scenarios said nothing under trio"
        stalled = trio.stalled
        if stalled is not None and stalled.hung:
            not_again = f"{prefix}: under trio the call on a stalled server did not end; a wait judged is not repeated"
            return Plan(endings=endings, why_fewer=why, stall=False, why_no_stall=not_again)
        return Plan(endings=endings, why_fewer=why)

    def _module_imports(self, rule: int) -> None:
        if self.target.environment_error:
            raise CouldNotJudge(
                rule,
                f"the environment ({self.target.environment_name}) did not start: {self.target.environment_error}",
                blocking=True,
            )
        if self._import_error is None:
            try:
                self.target.module  # noqa: B018  (imported by dotted name, as Grain does)
                self._import_error = ""
            except BaseException as exc:  # whatever the import raises, it is the verdict
                self._import_error = f"importing {self.target.module_name} raised {describe(exc)}"
        if self._import_error:
            raise CouldNotJudge(rule, self._import_error, blocking=True)

    def verdict(self, rule: int, loop: str | None = None) -> None:
        """Judge ``rule`` (under ``loop`` for the rules that need a run): return, or raise the verdict."""
        self._module_imports(rule)
        target = self.target
        static: dict[int, Callable[[], None]] = {
            1: lambda: checks.check_config(target),
            2: lambda: checks.check_signatures(target),
            12: lambda: checks.check_config_snippet(target),
        }
        if self.probe_error and rule in CALL_RULES:
            raise CouldNotJudge(rule, self.probe_error, blocking=True)
        if rule in static:
            static[rule]()
            if loop is None:
                return
        if loop is None:
            raise ValueError(f"rule {rule} is judged on a run: name the event loop")
        obs = self.observation(loop)
        dynamic: dict[int, Callable[[], None]] = {
            2: lambda: checks.check_entry_points_enter(obs),
            3: lambda: checks.check_yielded_name(target, obs),
            4: lambda: checks.check_fields_survive_msgpack(obs),
            5: lambda: checks.check_context_accepts_fields(obs),
            6: lambda: checks.check_cleanup(target, obs),
            7: lambda: checks.check_event_loop_friendly(target, obs),
            8: lambda: checks.check_concurrent_clients(target, obs),
            9: lambda: checks.check_startup_bounded(target, obs),
            10: lambda: checks.check_dead_server_raises(target, obs),
            11: lambda: checks.check_no_credentials(obs),
            13: lambda: checks.check_calls_bounded(target, obs),
        }
        dynamic[rule]()

    def seconds(self) -> dict[str, float]:
        return {loop: obs.seconds for loop, obs in self.observations.items()}
