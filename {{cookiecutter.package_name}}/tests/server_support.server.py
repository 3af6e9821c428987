"""What the server variant's tests share: the server that ``SERVER_COMMAND`` started, found by its pid,
and servers written in a test for the tests of ``server_process`` and ``the_sworker`` themselves."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import psutil
import pytest
from demo_support import Demo
from lifecycle_support import alive, command_line, descendants, kill, wait_until

from {{ cookiecutter.package_name }} import the_sworker

#: A server that only listens: it accepts each connection and closes it. What the tests of starting,
#: stopping and logging need is a process that listens, not a protocol. No braces: the parts of
#: ``SERVER_COMMAND`` are filled in with ``str.format``.
LISTENING_SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    server.accept()[0].close()
"""
#: ``server_process`` notes each server's pid in ``<log>.pid``; ``the_sworker.server_log_path`` names the log.
PID_FILE = re.compile(r"^{{ cookiecutter.package_name }}-(?P<host>.+)-(?P<port>\d+)\.pid$")


def use_server(monkeypatch: pytest.MonkeyPatch, code: str, *arguments: str) -> None:
    """Make the sworker start ``code`` as its server: a Python script given host, port and ``arguments``
    (filled in as ``SERVER_COMMAND``'s are, e.g. ``"{workdir}"``)."""
    command = [sys.executable, "-I", "-S", "-c", code, "{host}", "{port}", *arguments]
    monkeypatch.setattr(the_sworker, "SERVER_COMMAND", command)


def running_servers(log_dir: Path) -> dict[str, psutil.Process]:
    """The servers running now that ``SERVER_COMMAND`` started with their logs in ``log_dir``: instance
    address (``host:port``) -> process.

    Found by the pid file that ``server_process`` keeps beside each server's log while it runs, never by
    a command line: a server may rewrite its own (redis-server does), and a module's name is the author's.
    """
    found = {}
    for path in sorted(log_dir.glob("*.pid")):
        name = PID_FILE.match(path.name)
        try:
            process = psutil.Process(int(path.read_text()))
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
            continue  # removed or not yet written whole, or the server has just ended
        if name and alive(process.pid):
            found[f"{name['host']}:{name['port']}"] = process
    return found


def the_server(log_dir: Path) -> psutil.Process:
    """The one server running with its log in ``log_dir``: the one ``SERVER_COMMAND`` started."""
    servers = running_servers(log_dir)
    assert len(servers) == 1, f"servers with their pid file in {log_dir}: {servers}"
    (server,) = servers.values()
    return server


def signal_the_demo(run: Demo, signum: signal.Signals, limit: float, log_dir: Path) -> None:
    """Once the demo has a result (so its server runs, with its logs in ``log_dir``), send it ``signum``:
    everything it started, the server included, and the demo itself must end within ``limit``."""
    run.wait_for_line("first result after", timeout=60)
    started = descendants(run.process.pid)
    try:
        servers = running_servers(log_dir).values()
        assert servers and all(server in started for server in servers), (servers, started, run.output())
        run.process.send_signal(signum)
        what = f"what the demo started, after {signum.name}"
        try:
            wait_until(lambda: not any(alive(p.pid) for p in started), limit, what)
        except AssertionError as failure:
            running = [command_line(p) for p in started if alive(p.pid)]
            raise AssertionError(f"{failure}; still running: {running}\n{run.output()}") from None
        wait_until(lambda: run.process.poll() is not None, limit, f"the demo exits on {signum.name}")
    finally:
        kill(started)
