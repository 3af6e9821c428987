"""Grain specialized worker: runs the server on a worker node, talks to it from the head.

Grain enters ``grain_run_sworker()`` on the worker node, sends the fields it
yields to the head, and enters ``grain_context(**fields)`` there; tasklets reach
the client it yields as ``GVAR.context``. Grain stops both by cancellation, so
all cleanup lives in ``finally:`` (code after a bare ``yield`` would never run).
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from . import instance_key
from .client import Client
from .client_support import call_timeout, max_concurrent
from .server_process import ServerStartError, fill_in, pick_free_port, private_workdir, running_server, write_private

GRAIN_SWORKER_CONFIG: dict[str, object] = {}

#: Your server goes here, in place of the stand-in in ``demo/server.py``: an argument list (never
#: a shell string), e.g. ``["terachem", "-s", "{port}"]``. Filled in at start-up: ``{host}`` and
#: ``{port}`` (where to listen), ``{workdir}`` (a directory of this instance's own, mode 0700,
#: removed at teardown) and ``{secret_file}`` (a file in it that holds the per-instance secret,
#: mode 0600). The secret is also in the environment variable ``SECRET_ENV``; never on this line.
SERVER_COMMAND: list[str] = [
    sys.executable,
    "-m",
    "{{ cookiecutter.package_name }}.demo.server",
    "--host",
    "{host}",
    "--port",
    "{port}",
]

#: Files your server reads at start-up, written into ``{workdir}`` (mode 0600) before it starts:
#: name -> text, with the placeholders above and ``{secret}`` (a brace meant literally is doubled),
#: e.g. a config file that holds the secret, for a server that reads it from no other place:
#: ``{"redis.conf": "bind {host}\nport {port}\nrequirepass {secret}\n"}`` with
#: ``SERVER_COMMAND = ["redis-server", "{workdir}/redis.conf"]``.
SERVER_FILES: dict[str, str] = {}
#: The name of the secret's file in ``{workdir}`` (``{secret_file}``).
SECRET_FILE = "secret"

#: Address the server listens on; ``0.0.0.0`` is every interface. Unset, it is
#: this node's own address (from its host name), which other nodes can reach.
HOST_ENV = "{{ cookiecutter.package_name | upper }}_HOST"
#: Address the head is told to connect to, if not the one above (e.g. when the
#: server listens on ``0.0.0.0``, where the default is this node's address).
ADVERTISE_HOST_ENV = "{{ cookiecutter.package_name | upper }}_ADVERTISE_HOST"
#: The per-instance secret reaches the server in this environment variable (never on
#: its command line, where ``ps`` shows it to every user of the node).
SECRET_ENV = "{{ cookiecutter.package_name | upper }}_SERVER_SECRET"
#: Seconds to wait for the server to listen before giving up with an error.
STARTUP_TIMEOUT_ENV = "{{ cookiecutter.package_name | upper }}_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT = 60.0
#: The server's output goes to ``{{ cookiecutter.package_name }}-<host>-<port>.log`` in this directory
#: (default: the worker's working directory), at most 2 MB per instance (see ``server_process``).
LOG_DIR_ENV = "{{ cookiecutter.package_name | upper }}_LOG_DIR"


def server_addresses() -> tuple[str, str]:
    """Where the server listens, and the address the head connects to (yielded as ``host``)."""
    bind = os.environ.get(HOST_ENV) or node_address()
    advertised = os.environ.get(ADVERTISE_HOST_ENV) or (node_address() if bind == "0.0.0.0" else bind)
    return bind, advertised


def node_address() -> str:
    """This node's address, from its host name; warns if that is loopback (unreachable from the head)."""
    address = socket.gethostbyname(socket.gethostname())
    if address.startswith("127."):
        print(f"this node's name resolves to {address}, which the head cannot reach: set {HOST_ENV}", file=sys.stderr)
    return address


def server_log_path(host: str, port: int) -> Path:
    """Where the output of the server at ``host:port`` goes: one file per instance, named after it.

    Beside it, ``<same name>.pid`` holds the server's process id while it runs (for an operator).
    """
    return Path(os.environ.get(LOG_DIR_ENV) or os.getcwd()) / f"{{ cookiecutter.package_name }}-{host}-{port}.log"


def startup_timeout() -> float:
    """The bounded readiness wait, in seconds (``STARTUP_TIMEOUT_ENV``)."""
    raw = os.environ.get(STARTUP_TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_STARTUP_TIMEOUT
    except ValueError:
        raise ValueError(f"{STARTUP_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, object]]:
    """Start one server instance on this node; yield its name and how to reach it."""
    bind, host = server_addresses()
    try:
        port = pick_free_port(bind)
    except OSError as exc:  # not an address of this node, or not an address at all
        source = HOST_ENV if os.environ.get(HOST_ENV) else "this node's host name"
        raise ServerStartError(f"cannot listen on {bind!r} (from {source}): {exc}") from exc
    # A fresh secret per instance: only the head that receives it may connect. It reaches the
    # server through the environment and a private file, never the command line.
    secret = secrets.token_hex(16)
    log_path = server_log_path(host, port)
    with private_workdir(f"{{ cookiecutter.package_name }}-{port}-") as workdir:
        places = {"host": bind, "port": port, "workdir": workdir, "secret_file": workdir / SECRET_FILE}
        write_private(workdir / SECRET_FILE, secret)
        for name, text in SERVER_FILES.items():
            write_private(workdir / name, fill_in(text, f"SERVER_FILES[{name!r}]", secret=secret, **places))
        command = [fill_in(part, "SERVER_COMMAND", **places) for part in SERVER_COMMAND]
        async with running_server(
            command,
            host="127.0.0.1" if bind == "0.0.0.0" else bind,  # where the readiness check connects
            port=port,
            startup_timeout=startup_timeout(),
            env={SECRET_ENV: secret},
            log_path=log_path,
            pid_path=log_path.with_suffix(".pid"),
        ):
            # The MAC proves to the head that you started this instance (see instance_key).
            mac = instance_key.sign(host, port, secret)
            yield {
                "name": f"{{ cookiecutter.package_name }}@{host}:{port}",
                "host": host,
                "port": port,
                "secret": secret,
                "mac": mac,
            }


@asynccontextmanager
async def grain_context(
    host: str, port: int, secret: str, mac: str
) -> AsyncIterator[Client | instance_key.StrangerInstanceError]:
    """Connect the client that every tasklet on this instance shares.

    Its limits come from the head's environment: ``client_support.CALL_TIMEOUT_ENV`` bounds each
    call, ``client_support.MAX_CONCURRENT_ENV`` how many run at once on this instance's server. An
    instance that cannot prove you started it is never connected to: it gets the error its tasklets
    raise (raising here instead would crash Grain's head).
    """
    refused = instance_key.refusal(host, port, secret, mac)
    if refused is not None:
        yield refused
        return
    async with Client.connect(
        host, port, secret, call_timeout=call_timeout(), max_concurrent=max_concurrent()
    ) as client:  # closes every connection on the way out, cancelled or not
        yield client
