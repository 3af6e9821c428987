"""What the demo and the tests run beside Grain for this sworker: the demo service.

It stands in for the remote service on loopback, with a fresh token per run,
and hands the head the two environment variables its client reads.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..client import CALL_TIMEOUT_ENV, TOKEN_ENV, URL_ENV
from .local_grain import LOOPBACK, child_environment, free_port, running_process, wait_for

#: The demo's calls take milliseconds: a stalled service fails them in seconds, not after the
#: production default of an hour. A value already in the environment wins.
DEMO_CALL_TIMEOUT = "10"


def _listening(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def local_service() -> Iterator[dict[str, str]]:
    """Run the demo service on loopback; yield the environment the head needs."""
    token = secrets.token_urlsafe(24)
    port = free_port()
    module = "{{ cookiecutter.package_name }}.demo.service"
    command = [sys.executable, "-m", module, "--port", str(port)]
    env = child_environment(module, {TOKEN_ENV: token})
    with tempfile.TemporaryDirectory(prefix="demo-service-") as tmp:
        log = Path(tmp) / "service.log"
        with running_process(command, log, env) as service:
            wait_for(lambda: _listening(port), service, "the demo service", log)
            yield {
                URL_ENV: f"http://{LOOPBACK}:{port}",
                TOKEN_ENV: token,
                CALL_TIMEOUT_ENV: os.environ.get(CALL_TIMEOUT_ENV) or DEMO_CALL_TIMEOUT,
            }
