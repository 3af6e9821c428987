"""What the demo, the tests and the conformance kit run beside Grain: the service they call.

Point them at your service here, in one of two ways:

- a **local stand-in** of it (the default: ``demo/service.py``): set ``STAND_IN_COMMAND`` to the
  command that starts yours, with ``{port}`` where a free loopback port goes, and ``STAND_IN_URL``
  to its base URL. It gets a fresh token per run in ``TOKEN_ENV`` and must refuse other callers;
- **the service itself**: set ``STAND_IN_COMMAND = None`` and export ``URL_ENV`` and ``TOKEN_ENV``
  before you run them (the tests that stop or kill the service are then skipped).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..client import CALL_TIMEOUT_ENV, TOKEN_ENV, URL_ENV, MissingSettingError, required_env
from .local_grain import LOOPBACK, LocalGrainError, child_environment, free_port, running_process, wait_for

#: The command that starts the local stand-in, ``{port}`` in it filled in; None: no stand-in.
STAND_IN_COMMAND: list[str] | None = [
    sys.executable,
    "-m",
    "{{ cookiecutter.package_name }}.demo.service",
    "--port",
    "{port}",
]
#: The stand-in's base URL, the value ``URL_ENV`` gets: an SDK's often ends in a path such as ``/v1``.
STAND_IN_URL = "http://127.0.0.1:{port}/v1"
#: The demo's calls take milliseconds: a stalled service fails them in seconds, not after the
#: production default of an hour. A value already in the environment wins.
DEMO_CALL_TIMEOUT = "10"


@dataclass(frozen=True)
class Service:
    """The service the demo and the tests call: the environment the head needs, and the stand-in's process."""

    env: dict[str, str]
    #: The local stand-in, by its pid; None when the service runs elsewhere.
    process: subprocess.Popen[bytes] | None


def _listening(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def running_service() -> Iterator[Service]:
    """Start the local stand-in on a free loopback port with a fresh token (or take the service
    from the environment); stop it on exit."""
    call_timeout = {CALL_TIMEOUT_ENV: os.environ.get(CALL_TIMEOUT_ENV) or DEMO_CALL_TIMEOUT}
    if STAND_IN_COMMAND is None:
        try:
            url = required_env(URL_ENV, "your service's base URL (environment.py starts no stand-in)")
            token = required_env(TOKEN_ENV, "your API token for the service")
        except MissingSettingError as exc:  # the demo ends with this one line, not a traceback
            raise LocalGrainError(str(exc)) from None
        yield Service({URL_ENV: url, TOKEN_ENV: token, **call_timeout}, None)
        return
    token = secrets.token_urlsafe(24)
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in STAND_IN_COMMAND]
    env = child_environment("{{ cookiecutter.package_name }}", {TOKEN_ENV: token})
    with tempfile.TemporaryDirectory(prefix="stand-in-") as tmp:
        log = Path(tmp) / "service.log"
        with running_process(command, log, env) as process:
            wait_for(lambda: _listening(port), process, "the local stand-in service", log)
            url = STAND_IN_URL.replace("{port}", str(port))
            print(f"local stand-in service: pid {process.pid}, {URL_ENV}={url}", file=sys.stderr, flush=True)
            yield Service({URL_ENV: url, TOKEN_ENV: token, **call_timeout}, process)


@contextmanager
def local_service() -> Iterator[dict[str, str]]:
    """The environment the head needs to reach the service (the kit's ``sworker_environment``)."""
    with running_service() as service:
        yield service.env
