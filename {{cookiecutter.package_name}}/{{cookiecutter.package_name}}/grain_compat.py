"""Compatibility layer for Grain's head: losing a sworker instance never crashes it.

Grain 0.17.1's head (``grain.remote_exer.RemoteExecutor.run_sworker_clients``) crashes in three
ways when an instance leaves mid-batch (a walltime countdown, ``scancel``, a killed worker or
server, ``grain quit`` of one worker, three failed tasklets):

- ``KeyError: '<instance>'``: Gnaw still hands the head a tasklet for the instance it has just
  dropped (tasklets already on their way when it said the instance quit); the head looks the
  instance up and dies.
- ``KeyError: <tasklet id>``: when Gnaw drops an instance it puts every tasklet it had sent there
  back in the queue, including one whose result the head has already taken (Gnaw drops that
  result's acknowledgement: its instance is gone), or one still running; the head then runs it
  again elsewhere and dies looking up the tasklet it already finished (or delivers its result a
  second time, and dies in ``grain.delayed.relay``).
- ``KeyError`` or ``TypeError`` from ``grain_context``: an instance whose ``grain_context`` raises
  (its server died between starting and joining, or a stranger registered fields this package
  does not take) crashes the head as it joins.

Rarely (once in about 100 heads of a benchmark, once in 1,100 backendless heads here), a head
attaching to a Gnaw at the moment an instance registers dies on ``assert hsmsg["cmd"] == "hsAck"``:
Gnaw can write the new instance's ``pushSWorker`` before the handshake's ``hsAck``
(``gnaw/core/sstaging.go``, ``AddFeedbackRemote`` lists the head before it sends ``hsAck``). Both
the demo (the worker registers as the head attaches) and a backendless head (it registers its own
instance just before attaching) can meet it.

This module replaces that one method with one that keeps the head running instead: a tasklet for
an instance that is gone, or that could not join, is handed back to Gnaw as failed (Gnaw runs it
again on another instance); a tasklet whose result is already in is acknowledged without running;
a result that arrives twice is delivered once; an instance whose ``grain_context`` raises is left
out (logged), and Gnaw drops it after its tasklets fail; messages before ``hsAck`` are skipped
(``hsAck`` lists the instances as they are after them). When the last instance leaves with
tasklets waiting, it says so once: Grain waits for another instance, as it always does.

It is written here (no code of Grain's is copied) and is active only on the Grain versions it was
verified against, and only while the code it replaces and relies on is that code, byte for byte
(a hash of its source). Otherwise it patches nothing and logs one line saying why. The upstream
fix it stands for: in ``run_sworker_clients``, look instances and tasklets up with ``.get`` and
report a tasklet for a missing instance as failed, deliver a tasklet's result once, and accept
messages before ``hsAck``. Once Grain ships it, remove this file, its import and
``install()`` in the package's ``__init__.py``, and ``tests/test_grain_compat.py``.
Set ``{{ cookiecutter.package_name | upper }}_GRAIN_COMPAT=off`` to run Grain's head unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from typing import Any

import trio

logger = logging.getLogger(__name__)
#: The lines Grain's own head logs about its instances keep its logger and wording (the demo follows
#: the instances by them).
grain_logger = logging.getLogger("grain.remote_exer")

#: Set to ``off`` (or ``0``, ``no``, ``false``) to leave Grain's head as it is.
DISABLE_ENV = "{{ cookiecutter.package_name | upper }}_GRAIN_COMPAT"
#: Marks the replacement, so that a second package made from this template does not patch again.
MARK = "__sworker_grain_compat__"

#: Grain version -> SHA-256 of the source of what the replacement stands in for, and of what it
#: relies on behaving as it did when verified.
VERIFIED: dict[str, dict[str, str]] = {
    "0.17.1": {
        "grain.remote_exer.RemoteExecutor.run_sworker_clients": (
            "577ee78a645caba66e65e7936286eaafa442280b8902c6df695247ef4dd9e650"
        ),
        "grain.remote_exer.RemoteExecutor._sender": "4ed43ab01da8b7afe7821d6d6f094433796a274dd75dfacc16c676dd7e757ba1",
        "grain.remote_exer.RemoteExecutor.run": "a77a6bfe905c277ce6bd47874ac679664828098a74b4f57128f544d632354ec3",
        "grain.remote_exer.RemoteExecutor.sealer": "6d382df7288d76bc7d8438461975c6f2a742320fcac43905846402702fb95443",
        "grain.head.GrainPseudoRemote": "d84c85b1595289d40836f60348c812262fd6e3206428c923c864e06672827735",
        "grain.head.GrainSpecializedRemote": "bf5d33359837bd7d001b9c12288f38915eb95a9a49a2c8d55c1beb328f1e0cd1",
        "grain.head.backendless_sworker_manager": "c524539ab80bb96756559912eacdc406dd8c6d391df2c35ed8f2fc75a202b4ed",
        "grain.delayed.relay": "7bed1df9aa46a7cc367548abfd51bc3f65815fbbe250b65e9a742346eedb888e",
    },
}

#: Gnaw's result statuses for a sworker tasklet: done; failed (Gnaw runs it again, and counts it
#: against the instance's health); dropped (Gnaw frees its slot and neither retries nor counts it).
DONE, FAILED, DROPPED = "", "Exception", "UserCancelled"

_state: dict[str, Any] = {"installed": None, "original": None}


def _targets() -> dict[str, Any]:
    """What the replacement takes the place of, and what it relies on."""
    import grain.delayed
    import grain.head
    import grain.remote_exer

    executor = grain.remote_exer.RemoteExecutor
    return {
        "grain.remote_exer.RemoteExecutor.run_sworker_clients": _state["original"] or executor.run_sworker_clients,
        # `_sender` fills `fnd` before Gnaw can dispatch a tasklet and counts it once in `_wg`;
        # `run` and `sealer` wait on `_wg` and read results from Gnaw's other channel.
        "grain.remote_exer.RemoteExecutor._sender": executor._sender,
        "grain.remote_exer.RemoteExecutor.run": executor.run,
        "grain.remote_exer.RemoteExecutor.sealer": executor.sealer,
        # How an instance's client is entered and closed, and a tasklet run on it: `execf`
        # returns (True, result) or (False, (traceback, error)) and never raises.
        "grain.head.GrainPseudoRemote": grain.head.GrainPseudoRemote,
        "grain.head.GrainSpecializedRemote": grain.head.GrainSpecializedRemote,
        "grain.head.backendless_sworker_manager": grain.head.backendless_sworker_manager,
        # Each result must reach it once: it forgets the tasklet's future on the first.
        "grain.delayed.relay": grain.delayed.relay,
    }


def fingerprints() -> dict[str, str]:
    """SHA-256 of the source of each target, as ``VERIFIED`` records them."""
    return {name: hashlib.sha256(inspect.getsource(target).encode()).hexdigest() for name, target in _targets().items()}


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("off", "0", "no", "false")


def refusal() -> str | None:
    """Why the layer must not be installed on this Grain, or None if it may."""
    try:
        from grain._version import __version__ as version
    except ImportError as exc:
        return f"Grain's version cannot be read ({exc})"
    verified = VERIFIED.get(version)
    if verified is None:
        return f"Grain {version} is not a version it was verified on ({', '.join(VERIFIED)})"
    try:
        found = fingerprints()
    except (OSError, TypeError, AttributeError, ImportError) as exc:
        return f"Grain {version}'s source cannot be read to check it ({type(exc).__name__}: {exc})"
    changed = [name for name, digest in verified.items() if found.get(name) != digest]
    if changed:
        return f"Grain {version}'s {', '.join(changed)} is not the code it was verified against"
    return None


def install() -> bool:
    """Put the replacement in place if this Grain is the one verified; idempotent.

    Returns whether it is in place. Refusing, it patches nothing and logs one line why.
    """
    if _state["installed"] is not None:
        return bool(_state["installed"])
    from grain.remote_exer import RemoteExecutor

    if getattr(RemoteExecutor.run_sworker_clients, MARK, None):
        _state["installed"] = True  # another package made from this template adapted it already
        return True
    if disabled():
        _state["installed"] = False
        return False
    why = refusal()
    if why is not None:
        logger.warning(
            "{{ cookiecutter.package_name }}.grain_compat is not installed: %s; a head that loses a sworker "
            "instance mid-batch may crash with KeyError (see 'When an instance is lost' in the README)",
            why,
        )
        _state["installed"] = False
        return False
    _state["original"] = RemoteExecutor.run_sworker_clients
    RemoteExecutor.run_sworker_clients = run_sworker_clients
    _state["installed"] = True
    return True


def uninstall() -> None:
    """Put Grain's own method back; ``install()`` then decides afresh (for tests)."""
    from grain.remote_exer import RemoteExecutor

    if _state["original"] is not None:
        RemoteExecutor.run_sworker_clients = _state["original"]
    _state.update(installed=None, original=None)


async def handshake(channel: Any, dock_id: Any) -> dict[str, Any]:
    """Open Gnaw's approval channel; the instances it holds now (name -> fields).

    Gnaw may write an instance's ``pushSWorker`` (or ``quitSWorker``) before ``hsAck``: the
    instances ``hsAck`` lists already reflect those, so they are skipped.
    """
    from grain.conn_msgp import send_packet

    await send_packet(channel._so, {"cmd": "chApprovalRStatus", "name": dock_id})
    while True:
        message = await channel.receive()
        command = message.get("cmd", "")
        if command == "hsAck":
            instances: dict[str, Any] = message["obj"]
            return instances
        if command not in ("pushSWorker", "quitSWorker"):
            raise RuntimeError(f"Gnaw answered the head's handshake with {command!r}, not 'hsAck'")
        logger.debug("skipped %s of %s before Gnaw's hsAck", command, message.get("name"))


class InstancePool:
    """The clients of the head's sworker instances, and the tasklets Gnaw has them run."""

    def __init__(self, executor: Any, nursery: trio.Nursery, waiting_backendless: set[str]) -> None:
        self.executor = executor
        self.nursery = nursery
        self.waiting_backendless = waiting_backendless
        #: This head's own backendless types: their grain_context runs on the head's own settings.
        self.backendless = set(waiting_backendless)
        self.clients: dict[str, Any] = {}
        #: Instances whose grain_context raised: Gnaw holds them until their tasklets fail.
        self.failed_to_join: set[str] = set()
        self.announced_empty = False

    @property
    def ready(self) -> bool:
        """Every backendless instance of this head has joined (Grain's condition to start)."""
        return not self.waiting_backendless

    async def join(self, name: str, fields: dict[str, Any]) -> None:
        """Enter the instance's ``grain_context``; one that raises is left out, and logged.

        Except a backendless one that fails on something else than its fields: it reads the head's
        own settings, so its error (a missing setting) stops the head, as in Grain.
        """
        from grain.head import GrainSpecializedRemote

        self.waiting_backendless.discard(fields.get("_stype"))
        if name in self.clients:  # a new instance under the name of one whose leaving never came
            await self.leave(name)
        from grain import GVAR

        try:
            client = GrainSpecializedRemote(name, None, None, dict(fields))
            # Its grain_context runs in a task started from here: GVAR.instance names the instance there.
            GVAR.instance = name
            await client.connect(self.nursery)
        except Exception as exc:
            if fields.get("_stype") in self.backendless and not isinstance(exc, TypeError):
                raise
            self.failed_to_join.add(name)
            logger.error(
                "sworker instance %s could not join: its grain_context raised %s: %s; its tasklets go back to "
                "Gnaw, which runs them on another instance",
                name,
                type(exc).__name__,
                exc,
            )
            return
        finally:
            GVAR.instance = "N/A"
        self.clients[name] = client
        self.announced_empty = False
        grain_logger.info("client for specialized worker %s started", name)

    async def leave(self, name: str) -> None:
        """Close the instance's client (it cancels the tasklets still running on it)."""
        self.failed_to_join.discard(name)
        client = self.clients.pop(name, None)
        if client is not None:
            await client.aclose()
        waiting = len(self.executor.fnd)
        if not self.clients and waiting and not self.announced_empty:
            self.announced_empty = True
            logger.warning(
                "the last sworker instance (%s) left; %d tasklet(s) wait for another instance to join", name, waiting
            )

    async def close(self) -> None:
        for name in list(self.clients):
            await self.clients.pop(name).aclose()

    async def report(self, tid: int, name: str, status: str, *, needed: bool = True) -> None:
        """Tell Gnaw how a tasklet ended on ``name``. One no longer ``needed`` (its result is in) may
        find the head closing its channel to Gnaw: there is then no one left to tell."""
        try:
            await self.executor.side_c.send({"tid": tid, "exception": status, "result": name})
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if needed:
                raise

    async def run_tasklet(self, tid: int, res: Any, name: str) -> None:
        """Run one tasklet Gnaw approved on instance ``name``; its result is delivered once."""
        executor = self.executor
        function = executor.fnd.get(tid)
        if function is None:
            # Its result is in already: Gnaw sent it out again after losing the instance that ran it.
            await self.report(tid, name, DROPPED, needed=False)
            return
        client = self.clients.get(name)
        if client is None:
            # The instance left (or never joined) before it got this tasklet: Gnaw runs it elsewhere.
            await self.report(tid, name, FAILED)
            return
        ok, outcome = await client.execf(tid, res, function)
        if ok:
            first = executor.fnd.pop(tid, None) is not None
            # Gnaw hears of it first: once the result is delivered, the head may close the channel.
            await self.report(tid, name, DONE, needed=first)
            if first:
                executor.push_result.send_nowait((tid, outcome))
                executor._wg.done()
        elif tid not in executor.fnd:
            await self.report(tid, name, DROPPED, needed=False)  # another run of it delivered its result meanwhile
        else:
            await self.report(tid, name, FAILED)
            trace, error = outcome
            logger.error("Exception from task on %s: %s\n%s", name, error, trace)


async def run_sworker_clients(self: Any, dock_id: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Stands in for ``RemoteExecutor.run_sworker_clients``: the head's side of Gnaw's sworker instances."""
    from grain.head import backendless_sworker_manager
    from grain.pair import SocketChannel

    async with trio.open_nursery() as nursery:
        _, waiting_backendless, backendless_nursery = await nursery.start(
            backendless_sworker_manager, self.sworker_config, self.listen
        )
        pool = InstancePool(self, nursery, waiting_backendless)
        started = False
        async with SocketChannel(self.gnaw, dial=True, _n=nursery) as self.side_c:
            for name, fields in (await handshake(self.side_c, dock_id)).items():
                await pool.join(name, fields)
            if pool.ready:
                started = True
                task_status.started()
            async for message in self.side_c:
                command = message.get("cmd", "")
                if command == "":
                    nursery.start_soon(pool.run_tasklet, message["tid"], message["res"], message["func"])
                elif command == "pushSWorker":
                    await pool.join(message["name"], message["obj"])
                    if not started and pool.ready:
                        started = True
                        task_status.started()
                elif command == "quitSWorker":
                    await pool.leave(message["name"])
                else:
                    logger.warning("unknown command %r from Gnaw's sworker channel", command)
        await pool.close()
        backendless_nursery.cancel_scope.cancel()


setattr(run_sworker_clients, MARK, True)
