"""The server variant across hosts, on real Grain, with network namespaces standing in for nodes.

The head node is one network namespace (Gnaw and the head process), the worker node another
(``python -m grain.worker`` and the server it starts), joined by a veth pair on a private test
subnet; a third namespace is a stranger on the network, reaching the worker through a second veth
pair. Nothing leaves 127.0.0.0/8 and these subnets. Every process is started here and ended here by
its pid or process group, and every namespace (with its links) is deleted, even on failure.

Needs root and ``ip netns``; skipped, with the reason, where the machine does not allow them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import netns
import psutil
import pytest
from conftest import bake, replay_answers

#: The server variant under a name of its own, so that its processes are told apart from other tests'.
ANSWERS = {
    **replay_answers("server"),
    "project_name": "Cross Host",
    "package_name": "cross_host",
    "service_url_env": "CROSS_HOST_URL",
    "api_token_env": "CROSS_HOST_TOKEN",
}
PACKAGE = ANSWERS["package_name"]
PREFIX = PACKAGE.upper()
SWORKER = f"{PACKAGE}.the_sworker"

HEAD_ADDRESS, WORKER_ADDRESS = "10.231.0.1", "10.231.0.2"  # the head-worker link, 10.231.0.0/24
WORKER_SIDE, STRANGER_ADDRESS = "10.231.1.1", "10.231.1.2"  # the worker-stranger link, 10.231.1.0/24
#: Any port is free in a fresh namespace, but the head finds Gnaw by its -wurl among all processes
#: (other namespaces too): a port of its own keeps a concurrent run's head off this run's Gnaw.
GNAW_PORT = 20000 + secrets.randbelow(20000)
CAPACITY = 2
STEP_TIMEOUT = 20.0
PYTHON = sys.executable
GNAW = str(Path(sys.executable).with_name("gnaw"))

#: The head: tasklets through the sworker, records what reached grain_context, waits for the
#: test to probe the server, then runs more tasklets (the stranger did not disturb its instance).
HEAD_SCRIPT = """
import json, sys
from pathlib import Path

import grain.delayed
import trio
from grain import GVAR
from grain.delayed import delayed, each
from grain.resource import Capacity

import {pkg}.the_sworker as the_sworker
from {pkg}.tasklet import square

config, state = sys.argv[1], Path(sys.argv[2])
seen_fields = []
original_context = the_sworker.grain_context


def recording_context(**fields):
    seen_fields.append(fields)
    return original_context(**fields)


the_sworker.grain_context = recording_context  # Grain looks it up on the module when it connects


@delayed
async def instance_name():
    return GVAR.instance


def publish(name, data):
    (state / (name + ".tmp")).write_text(json.dumps(data))
    (state / (name + ".tmp")).rename(state / name)


async def main():
    first = await each([(square @ Capacity(1))(float(x)) for x in range(8)])
    names = await each([(instance_name @ Capacity(1))() for _ in range(2)])
    publish("ready.json", dict(first=first, names=names, fields=seen_fields))
    with trio.fail_after({timeout}):
        while not (state / "go").exists():
            await trio.sleep(0.02)
    again = await each([(square @ Capacity(1))(float(x)) for x in range(8)])
    publish("done.json", dict(again=again))


grain.delayed.run(main, config_file=config)
"""

#: A client of our own, from any namespace: each case is a list of requests sent one by one; it
#: reports the replies and whether the server closed the connection afterwards.
PROBE_SCRIPT = """
import json, socket, sys

host, port, cases = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
report = {}
for name, requests in cases.items():
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            stream = sock.makefile("rwb")
            replies = []
            for request in requests:
                stream.write(json.dumps(request).encode() + b"\\n")
                stream.flush()
                line = stream.readline()
                replies.append(json.loads(line) if line else None)
            sock.settimeout(0.3)
            try:
                closed = sock.recv(1) == b""
            except TimeoutError:
                closed = False
            report[name] = dict(replies=replies, closed=closed)
    except OSError as exc:
        report[name] = dict(error=type(exc).__name__)
print(json.dumps(report))
"""


@dataclass(frozen=True)
class Network:
    head: str
    worker: str
    stranger: str


@contextmanager
def network() -> Iterator[Network]:
    """Three namespaces, two veth pairs, addresses, links up (``lo`` too); all deleted on exit."""
    try:
        with netns.Network() as made:
            net = Network(head=made.namespace("head"), worker=made.namespace("work"), stranger=made.namespace("third"))
            made.veth(
                netns.End(net.head, made.name("h"), f"{HEAD_ADDRESS}/24"),
                netns.End(net.worker, made.name("w"), f"{WORKER_ADDRESS}/24"),
            )
            made.veth(
                netns.End(net.stranger, made.name("s"), f"{STRANGER_ADDRESS}/24"),
                netns.End(net.worker, made.name("x"), f"{WORKER_SIDE}/24"),
            )
            # The stranger reaches the worker node's address through its own link, as another host would.
            netns.must(netns.ip("-n", net.stranger, "route", "add", "10.231.0.0/24", "via", WORKER_SIDE))
            yield net
    except netns.Unavailable as exc:
        pytest.skip(f"cannot test across hosts: {exc}")


def probe(namespace: str, host: str, port: int, cases: dict[str, list[dict[str, object]]]) -> dict[str, dict]:
    command = netns.inside(namespace, [PYTHON, "-c", PROBE_SCRIPT, host, str(port), json.dumps(cases)])
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert result.returncode == 0, result.stderr
    report: dict[str, dict] = json.loads(result.stdout)
    return report


def server_process(port: int) -> psutil.Process:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if f"{PACKAGE}.demo.server" in cmdline and str(port) in cmdline:
            return process
    raise AssertionError(f"no {PACKAGE}.demo.server process with port {port}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("cross-host"), **ANSWERS)


def child_env(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(f"{PREFIX}_") and k != "PYTEST_ADDOPTS"}
    key = {f"{PREFIX}_INSTANCE_KEY_FILE": str(project / ".instance.key")}  # the head's and the worker's, not in HOME
    return {**env, "PYTHONPATH": str(project), **key, **extra}


#: Where the worker's server listens: the link's address (the usual way), or every interface with
#: the link's address advertised to the head.
BINDS = {
    "bind-link-address": {f"{PREFIX}_HOST": WORKER_ADDRESS},
    "bind-all-advertise-link-address": {f"{PREFIX}_HOST": "0.0.0.0", f"{PREFIX}_ADVERTISE_HOST": WORKER_ADDRESS},
}


@pytest.mark.parametrize("bind", BINDS)
def test_the_head_reaches_the_server_across_hosts_and_strangers_are_refused(
    project: Path, tmp_path: Path, bind: str
) -> None:
    listen = f"tcp://{HEAD_ADDRESS}:{GNAW_PORT}"
    config = tmp_path / "grain.toml"
    config.write_text(
        f'[head]\nlisten = "{listen}"\n\n[head.gnaw]\nenabled = true\nidle_quit = "10s"\n\n'
        f'[worker]\nspecialized_type = "{SWORKER}"\ndial = "{listen}"\n\n'
        f"[worker.res]\nCapacity = {{ V = {CAPACITY} }}\n"
    )
    head_script = tmp_path / "head.py"
    head_script.write_text(HEAD_SCRIPT.format(pkg=PACKAGE, timeout=STEP_TIMEOUT))
    state = tmp_path / "state"
    state.mkdir()
    gnaw_socket = Path(tempfile.gettempdir()) / f"gnaw-xhost-{secrets.token_hex(4)}"
    server_pid = None

    with network() as net, ExitStack() as stack:
        stack.callback(gnaw_socket.unlink, missing_ok=True)
        gnaw = stack.enter_context(
            netns.started(
                net.head,
                [GNAW, "-hurl", f"unix://{gnaw_socket}", "-wurl", listen, "-n", "8", "-t", "10s", "-swarm", "0"],
                tmp_path / "gnaw.log",
                child_env(project),
                signal.SIGTERM,
                0.5,
            )
        )
        netns.wait_until(
            gnaw_socket.exists, STEP_TIMEOUT, f"Gnaw's socket {gnaw_socket}", {"Gnaw": gnaw}, tmp_path, 0.02
        )
        # The worker node: its server listens on, and is advertised at, the link's address.
        res = json.dumps({"Capacity": {"V": CAPACITY}})
        worker = stack.enter_context(
            netns.started(
                net.worker,
                [PYTHON, "-m", "grain.worker", "--url", listen, "--res", res, "--sworker", SWORKER],
                tmp_path / "worker.log",
                child_env(project, **BINDS[bind], **{f"{PREFIX}_LOG_DIR": str(tmp_path)}),
                signal.SIGINT,
                10.0,
            )
        )
        head = stack.enter_context(
            netns.started(
                net.head,
                [PYTHON, str(head_script), str(config), str(state)],
                tmp_path / "head.log",
                child_env(project),
                signal.SIGTERM,
                5.0,
            )
        )
        everyone = {"Gnaw": gnaw, "the worker": worker, "the head": head}
        netns.wait_until((state / "ready.json").exists, STEP_TIMEOUT, "ready.json", everyone, tmp_path, 0.02)
        ready = json.loads((state / "ready.json").read_text())

        # The head ran tasklets on the server in the other namespace, at the advertised address.
        assert ready["first"] == [float(x * x) for x in range(8)]
        [fields] = ready["fields"]
        port, secret = fields["port"], fields["secret"]
        assert fields["host"] == WORKER_ADDRESS
        assert set(ready["names"]) == {f"{PACKAGE}@{WORKER_ADDRESS}:{port}"}

        # The secret reaches the server in its environment only: not on any command line (ps).
        server = server_process(port)
        server_pid = server.pid
        assert server.ppid() == worker.pid
        assert server.environ().get(f"{PREFIX}_SERVER_SECRET") == secret
        command_lines = subprocess.run(
            ["ps", "-eww", "-o", "args="], check=False, capture_output=True, text=True, timeout=10
        )
        assert command_lines.returncode == 0 and f"{PACKAGE}.demo.server" in command_lines.stdout
        assert secret not in command_lines.stdout
        assert not [p.pid for p in psutil.process_iter(["cmdline"]) if secret in " ".join(p.info["cmdline"] or [])]

        # A stranger on the network reaches the port but is refused without the instance's secret.
        square = {"id": 1, "op": "square", "x": 3}
        refused = {"replies": [{"id": 1, "error": "unauthenticated"}], "closed": True}
        stranger = probe(
            net.stranger,
            WORKER_ADDRESS,
            port,
            {
                "no hello": [square],
                "hello without secret": [{"id": 1, "op": "hello"}],
                "wrong secret": [{"id": 1, "op": "hello", "secret": secrets.token_hex(16)}],
                "with the secret": [{"id": 1, "op": "hello", "secret": secret}, {"id": 2, "op": "square", "x": 3}],
            },
        )
        assert stranger["no hello"] == refused
        assert stranger["hello without secret"] == refused
        assert stranger["wrong secret"] == refused
        # The control: the same stranger holding the secret is served, so the refusals are the secret's.
        assert stranger["with the secret"] == {
            "replies": [{"id": 1, "result": "hello"}, {"id": 2, "result": 9}],
            "closed": False,
        }
        # A raw socket from the head node without the secret is refused too.
        assert probe(net.head, WORKER_ADDRESS, port, {"no hello": [square]})["no hello"] == refused
        # Bound to the link's address, the server does not listen on the worker node's loopback;
        # bound to every interface, it does, and refuses a local user without the secret there too.
        loopback = probe(net.worker, "127.0.0.1", port, {"loopback": [square]})["loopback"]
        assert loopback == (refused if bind.startswith("bind-all") else {"error": "ConnectionRefusedError"})

        # The head's own connection was not disturbed: more tasklets, then the head exits by itself.
        (state / "go").touch()
        netns.wait_until((state / "done.json").exists, STEP_TIMEOUT, "done.json", {"the head": head}, tmp_path, 0.02)
        assert json.loads((state / "done.json").read_text())["again"] == [float(x * x) for x in range(8)]
        assert head.wait(STEP_TIMEOUT) == 0, netns.log_tails(tmp_path)

    # The worker (stopped with SIGINT, as a leaving worker) stopped its server.
    assert server_pid is not None
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE


def test_bind_and_advertised_addresses_come_from_one_place(project: Path) -> None:
    script = f"""
import json, os
from {PACKAGE}.demo.environment import local_service
from {PACKAGE}.the_sworker import server_addresses
cases = {{}}
for name, env in json.loads(os.environ["CASES"]).items():
    os.environ.update(env)
    cases[name] = server_addresses()
    for key in env:
        del os.environ[key]
with local_service() as env:
    os.environ.update(env)
    cases["local"] = server_addresses()
print(json.dumps(cases))
"""
    host, advertise = f"{PREFIX}_HOST", f"{PREFIX}_ADVERTISE_HOST"
    cases = {
        "host": {host: WORKER_ADDRESS},
        "wildcard, advertised": {host: "0.0.0.0", advertise: WORKER_ADDRESS},
        "wildcard": {host: "0.0.0.0"},
    }
    env = child_env(project, CASES=json.dumps(cases))
    result = subprocess.run([PYTHON, "-c", script], check=False, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    addresses = json.loads(result.stdout)
    node = socket.gethostbyname(socket.gethostname())
    assert addresses == {
        "host": [WORKER_ADDRESS, WORKER_ADDRESS],
        "wildcard, advertised": ["0.0.0.0", WORKER_ADDRESS],
        "wildcard": ["0.0.0.0", node],
        "local": ["127.0.0.1", "127.0.0.1"],
    }
