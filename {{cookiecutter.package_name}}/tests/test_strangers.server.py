"""Only your own instances join the head (real Grain; ``instance_key``, ``grain_compat``).

Grain authenticates no worker: any process that reaches the head's listen address can register an
instance of this sworker type. A stranger's instance here is a worker started with another key, or
a process that registers with Gnaw by hand, again and again, pointing at a server that answers
every call wrongly. Next to a genuine instance, the head runs 2,000 tasklets: none wrong, none
taken from the stranger, the stranger's server never contacted, and the head names it once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from loss_support import LyingServer, register_by_hand, run_head, two_instances

from {{ cookiecutter.package_name }}.instance_key import KEY_FILE_ENV

pytestmark = pytest.mark.real_grain

TASKS = 2000
REFUSED = "REFUSED A STRANGER"


def test_a_worker_started_with_another_key_never_has_a_result_accepted(
    tmp_path: Path, nothing_left_behind: None
) -> None:
    with two_instances(tmp_path, second_env={KEY_FILE_ENV: str(tmp_path / "someone-else.key")}) as grain:
        genuine, stranger = (worker.instance_name() for worker in grain.workers)
        head = run_head(grain, None, tasks=TASKS)
    assert head.code == 0, f"the head crashed ({head.crash})\n{head.stderr[-4000:]}"
    summary = head.summary
    assert summary is not None and summary["tasks"] == TASKS and summary["wrong"] == 0, summary
    assert list(summary["per_instance"]) == [genuine], summary  # no result came from the stranger
    address = stranger.split("@")[1]
    [said] = [line for line in head.stderr.splitlines() if REFUSED in line]  # once, naming it
    assert address in said and stranger in said, said
    assert "could not prove it was started by you" in head.stderr  # its tasklets' error, then run again


def test_a_stranger_registering_by_hand_again_and_again_is_never_used(
    tmp_path: Path, nothing_left_behind: None
) -> None:
    liar = LyingServer()
    stop = threading.Event()
    registered: list[str] = []

    def keep_registering(listen: str) -> None:
        # Each registration under a new name: Gnaw drops the last one after three failed tasklets.
        while not stop.is_set():
            name = f"{{ cookiecutter.package_name }}@127.0.0.1:{liar.port}-{len(registered)}"
            fields = {"host": "127.0.0.1", "port": liar.port, "secret": "guessed", "mac": "0" * 64}
            register_by_hand(listen, name, fields)
            registered.append(name)
            time.sleep(0.05)

    try:
        with two_instances(tmp_path) as grain:
            genuine = sorted(worker.instance_name() for worker in grain.workers)
            thread = threading.Thread(target=keep_registering, args=(grain.listen,))
            thread.start()
            try:
                head = run_head(grain, None, tasks=TASKS, pause=0.001)
            finally:
                stop.set()
                thread.join()
    finally:
        liar.close()
    assert head.code == 0, f"the head crashed ({head.crash})\n{head.stderr[-4000:]}"
    summary = head.summary
    assert summary is not None and summary["tasks"] == TASKS and summary["wrong"] == 0, summary
    assert sorted(summary["per_instance"]) == genuine, summary
    assert liar.calls == 0  # the head never even connected to it
    assert len(registered) >= 3
    [said] = [line for line in head.stderr.splitlines() if REFUSED in line]
    assert f"127.0.0.1:{liar.port}" in said and any(f"({name})" in said for name in registered), said


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"host": "127.0.0.1", "port": 1, "secret": "x"}, id="no-mac"),
        pytest.param({"host": "127.0.0.1", "port": 1, "secret": "x", "mac": "0", "extra": 1}, id="extra-field"),
    ],
)
def test_a_registration_grain_context_cannot_take_does_not_crash_the_head(
    tmp_path: Path, fields: dict[str, object], nothing_left_behind: None
) -> None:
    with two_instances(tmp_path) as grain:
        register_by_hand(grain.listen, "{{ cookiecutter.package_name }}@forged", fields)
        head = run_head(grain, None, tasks=500)
    assert head.code == 0, f"the head crashed ({head.crash})\n{head.stderr[-4000:]}"
    summary = head.summary
    assert summary is not None and summary["tasks"] == 500 and summary["wrong"] == 0, summary
    assert "{{ cookiecutter.package_name }}@forged" not in summary["per_instance"]
    assert "sworker instance {{ cookiecutter.package_name }}@forged could not join" in head.stderr, head.stderr[-3000:]
