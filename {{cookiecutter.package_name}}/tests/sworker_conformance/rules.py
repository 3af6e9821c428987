"""The contract's rules, numbered as in the package README, and the verdicts that are not a pass."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One rule of the sworker contract, with the fix that applies in general."""

    number: int
    title: str
    fix: str


RULES: dict[int, Rule] = {
    rule.number: rule
    for rule in (
        Rule(
            1,
            "GRAIN_SWORKER_CONFIG is a dict with known keys; BACKENDLESS is a bool",
            "define GRAIN_SWORKER_CONFIG = {} for a server sworker, or {'BACKENDLESS': True} for a "
            "backendless one (Grain reads BACKENDLESS for truth: the string 'false' counts as True).",
        ),
        Rule(
            2,
            "grain_run_sworker() and grain_context(**fields) are async context managers",
            "decorate both with @contextlib.asynccontextmanager, and give grain_run_sworker no "
            "required arguments: Grain calls it as grain_run_sworker().",
        ),
        Rule(
            3,
            "the yielded value is a dict with a unique, glob-free str 'name' and no '_stype'",
            "yield a dict whose 'name' is a non-empty str without * ? [ ] that differs between live "
            "server instances (e.g. built from host:port), and do not use the key '_stype'.",
        ),
        Rule(
            4,
            "yielded fields survive msgpack unchanged",
            "yield only str, bytes, int (64-bit), float, bool, None, lists and dicts with str keys; "
            "yield lists, not tuples (they arrive as lists); convert paths, sets and dates to str.",
        ),
        Rule(
            5,
            "grain_context accepts exactly the yielded fields and starts",
            "make grain_context's parameters match the fields grain_run_sworker yields (besides "
            "'name'), and let it raise only for a real fault: an error there crashes the head.",
        ),
        Rule(
            6,
            "cleanup runs under cancellation and finishes within 10 s",
            "put cleanup in a finally: block around the yield (Grain cancels; code after a bare "
            "yield never runs), shield its awaits with anyio.CancelScope(shield=True) under a "
            "timeout of your own, and terminate, kill and reap every child process.",
        ),
        Rule(
            7,
            "the code runs under trio and never blocks the event loop",
            "write async code with anyio or trio, not asyncio (Grain runs trio); build clients, SSL "
            "contexts and tokens once (in grain_context), not per call; move any other blocking call "
            "(time.sleep, sync I/O, a sync SDK) off the loop with anyio.to_thread.run_sync.",
        ),
        Rule(
            8,
            "one client serves V concurrent tasklets",
            "every tasklet on an instance shares the one client at once: hold an anyio.Lock around the "
            "whole exchange (for a server that runs one job at a time, around the whole job: every request "
            "it makes, up to its result), or use a connection pool; or, if one instance can only run one "
            "job at once, set [worker.res] Capacity = { V = 1 } (what one instance runs at once; the kit "
            "reads it, or --sworker-capacity).",
        ),
        Rule(
            9,
            "start-up is bounded: grain_run_sworker yields or raises in time",
            "wait for the server's readiness with a timeout of your own (anyio.fail_after) and a short "
            "backoff, and raise a clear error, with the server's output, when it does not come up; if "
            "it really needs longer to start than the kit's limit, pass --sworker-startup-timeout SECONDS.",
        ),
        Rule(
            10,
            "a call on a dead server raises",
            "turn EOF (a read of b'' is not a reply) and a reset or refused connection into an "
            "exception, and never answer one with a default value: the first call after the server "
            "stops must raise, within a time limit of its own.",
        ),
        Rule(
            11,
            "no long-lived credential in the yielded fields",
            "read tokens and passwords from the environment inside grain_context; Gnaw keeps the "
            "fields and hands them to the next head. A secret made fresh per instance is fine.",
        ),
        Rule(
            12,
            "the [worker] config names the module by dotted name with sworker resources only",
            "set specialized_type = 'package.the_sworker' (not a .py path), give [worker.res] only "
            "Capacity, Memory or WTime (no Cores, Node or Token), and never memory without cores.",
        ),
        Rule(
            13,
            "every call is bounded: a call on a stalled server raises within the stated limit",
            "bound every call with a limit of your own: a timeout in the client library (httpx.Timeout(...), "
            "a socket timeout), or anyio.fail_after(limit) around the whole call, raising an error that names "
            "the limit; never timeout=None. Grain has no limit of its own: a server that hangs (a stuck job, a "
            "SIGSTOP, a full disk) holds every tasklet on the instance for good. State the limit to the kit with "
            "--sworker-call-limit SECONDS (and --sworker-call-limit-env NAME if the module reads it from there).",
        ),
    )
}


class ContractViolation(AssertionError):
    """A rule of the contract is broken: which one, what was seen, how to fix it."""

    def __init__(self, rule: int, observed: str, fix: str | None = None) -> None:
        self.rule = RULES[rule]
        self.observed = observed.strip()
        self.fix = fix or self.rule.fix
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"Rule {self.rule.number} ({self.rule.title}) is broken: {self.observed} Fix: {self.fix}"


class CouldNotJudge(AssertionError):
    """The kit could not say whether a rule holds, and why (one line).

    ``blocking`` marks what the author must act on (a probe that fails on a live
    instance, a module that does not import): reported as a failure. Otherwise
    (another rule failed first, nothing to observe) it is reported as a skip.
    """

    def __init__(self, rule: int, reason: str, *, blocking: bool = False) -> None:
        self.rule = RULES[rule]
        self.reason = " ".join(reason.split())
        self.blocking = blocking
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"the kit could not judge Rule {self.rule.number}: {self.reason}"


class NoProbe(AssertionError):
    """No probe was given: the rules judged on calls were not judged, which is not a pass."""

    def __init__(self, rules: tuple[int, ...]) -> None:
        self.rules = rules
        super().__init__(str(self))

    def __str__(self) -> str:
        numbers = ", ".join(map(str, self.rules[:-1])) + f" and {self.rules[-1]}"
        return (
            f"the kit could not judge Rules {numbers}: it made no call, for no probe was given. Give "
            "--sworker-probe module:function (an async probe(client) that makes one representative call, the one "
            "your tasklet makes), or --sworker-no-probe to judge without calls (the summary then says so)."
        )


class Portability(AssertionError):
    """What only asyncio shows: trio-only code. Grain runs trio, so this is never a failure."""

    def __init__(self, observed: str) -> None:
        self.observed = observed.strip()
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"{self.observed}. Grain runs trio, so this is portability only; to run under asyncio too, write the "
            "async code against anyio."
        )
