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

from .client import Client
from .demo_server import SECRET_ENV
from .server_process import pick_free_port, running_server

GRAIN_SWORKER_CONFIG: dict[str, object] = {}

#: Your server goes here: an argument list (never a shell string), in which
#: ``{host}`` and ``{port}`` are filled in at start-up, e.g. ``["terachem", "-s", "{port}"]``.
SERVER_COMMAND: list[str] = [
    sys.executable,
    "-m",
    "{{ cookiecutter.package_name }}.demo_server",
    "--host",
    "{host}",
    "--port",
    "{port}",
]

#: Address the server listens on and the head connects to. Unset, it is this
#: node's own address (from its host name), which other nodes can reach.
HOST_ENV = "{{ cookiecutter.package_name | upper }}_HOST"
#: Seconds to wait for the server to listen before giving up with an error.
STARTUP_TIMEOUT_ENV = "{{ cookiecutter.package_name | upper }}_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT = 60.0


def server_host() -> str:
    """Where the server listens: ``HOST_ENV`` if set, else this node's address."""
    return os.environ.get(HOST_ENV) or socket.gethostbyname(socket.gethostname())


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
    host = server_host()
    port = pick_free_port(host)
    command = [part.format(host=host, port=port) for part in SERVER_COMMAND]
    # A fresh secret per instance: only the head that receives it may connect.
    # It reaches the server through the environment, never the command line.
    secret = secrets.token_hex(16)
    async with running_server(
        command,
        host=host,
        port=port,
        startup_timeout=startup_timeout(),
        env={SECRET_ENV: secret},
    ):
        yield {"name": f"{{ cookiecutter.package_name }}@{host}:{port}", "host": host, "port": port, "secret": secret}


@asynccontextmanager
async def grain_context(host: str, port: int, secret: str) -> AsyncIterator[Client]:
    """Connect the client that every tasklet on this instance shares."""
    client = await Client.connect(host, port, secret)
    try:
        yield client
    finally:
        await client.aclose()
