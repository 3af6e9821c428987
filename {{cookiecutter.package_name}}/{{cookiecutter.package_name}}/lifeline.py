"""Child processes that never outlive this one, whatever signal ends it.

A child runs in a session of its own so that everything it starts can be
stopped as one process group; but then the signals that end its parent's job
(a batch system's or an operator's SIGTERM or SIGKILL to the parent alone)
never reach it, and it would run on for good. Three guards close that gap:

- ``sigterm_as_sigint()``: SIGTERM does what Ctrl-C does, so the cleanup in
  ``finally:`` blocks runs (Grain's worker handles SIGINT only).
- ``die_with_parent``: on Linux the kernel kills the child the moment its
  parent dies, even by SIGKILL (``PR_SET_PDEATHSIG``).
- ``Watchdog``: a tiny process that stops the child's whole process group when
  this process dies; it also covers what the child started, and systems
  without ``PR_SET_PDEATHSIG``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
#: Whether the kernel kills a child when its parent dies (Linux only; the tests turn it off
#: to prove that the watchdog alone suffices).
CAN_DIE_WITH_PARENT = _prctl is not None

#: Seconds the watchdog gives the group between SIGTERM and SIGKILL.
WATCHDOG_GRACE = 1.0
_STAND_DOWN = b"stand down"
#: The watchdog: blocks reading its stdin, a pipe whose only writer is the process it watches.
#: End of file without the stand-down word means that process died: stop the group.
_WATCHDOG = f"""
import os, signal, sys, time

group, grace, note = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
parent = os.getppid()
if sys.stdin.buffer.read() != {_STAND_DOWN!r}:
    try:
        os.killpg(group, signal.SIGTERM)
        if note:
            with open(note, "a") as log:
                print("[watchdog] process", parent, "ended without stopping group", group, "- stopped it", file=log)
    except OSError:
        pass  # the group is gone, or the note cannot be written
    deadline = time.monotonic() + grace
    try:
        while time.monotonic() < deadline:
            time.sleep(0.02)
            os.killpg(group, 0)
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass  # the group is gone
"""


def die_with_parent(parent_pid: int) -> None:
    """As ``preexec_fn``: the child gets SIGKILL when its parent dies (Linux; elsewhere nothing).

    Linux sends it when the *thread* that forked the child exits, not the
    process: fork from a thread that outlives the child (the main thread, or
    the event loop's own), never from a pool thread that exits when idle (as
    the threads behind anyio's and trio's ``to_thread`` do, after 10 s).
    ``parent_pid`` is read before the fork: if the parent died before the
    guard was set, the child would never be signalled, so it ends itself.
    """
    if not CAN_DIE_WITH_PARENT or _prctl is None:
        return
    if _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


class Watchdog:
    """A process that stops process group ``group`` if this process dies before ``stand_down()``.

    It holds the read end of a pipe whose write end only this process holds
    (descriptors are not inherited by other children), so the end of file it
    sees is this process's exit, however it came. It then sends the group
    SIGTERM, SIGKILL after ``WATCHDOG_GRACE`` seconds, and, if ``note`` names
    a file, says so in it. It runs in a session of its own, out of reach of
    what ends this process's group.
    """

    def __init__(self, group: int, note: Path | None = None) -> None:
        read_end, self._write_end = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(group), str(WATCHDOG_GRACE), str(note or "")],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def stand_down(self) -> None:
        """The group is stopped: let the watchdog exit without acting (reap ``self.process`` next)."""
        try:
            os.write(self._write_end, _STAND_DOWN)
        except BrokenPipeError:
            pass  # it is gone already
        finally:
            os.close(self._write_end)

    def dismiss(self, timeout: float = WATCHDOG_GRACE) -> None:
        """The group is stopped: stand the watchdog down and reap it, killed if it lingers past ``timeout`` s."""
        self.stand_down()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


#: Blocks (in the main thread) that rely on the SIGTERM handler below.
_holders = 0


@contextmanager
def sigterm_as_sigint() -> Iterator[None]:
    """While the block runs, SIGTERM does what SIGINT does: the code in ``finally:`` blocks runs.

    Under Grain's worker, SIGINT makes it leave the head and cancel the
    sworker; without this, SIGTERM (``kill``, a batch system's ``qdel``) would
    end the worker on the spot. Only the main thread may set a signal handler
    (the conformance kit runs the sworker in another: nothing changes there),
    a handler someone else set is left alone, and the default comes back
    when the last such block ends.
    """
    global _holders
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _holders == 0 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _as_sigint)
    _holders += 1
    try:
        yield
    finally:
        _holders -= 1
        if _holders == 0 and signal.getsignal(signal.SIGTERM) is _as_sigint:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _as_sigint(signum: int, frame: FrameType | None) -> None:
    # The SIGINT handler in place (trio's, asyncio's or Python's) decides where KeyboardInterrupt goes.
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT is ignored (a background job): SIGTERM ends the process, as it would have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
