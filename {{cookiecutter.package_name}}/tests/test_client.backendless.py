"""The client: bounded calls, a base URL with a path, and every failure an error, never a result.

Calls go through ``probe`` (the package's tasklet call and its check), so these tests hold for
any service. The service comes from ``demo/environment.py`` (the local stand-in, or yours); a test
that stops the service needs the stand-in's process and is skipped without one. Small servers
written here stand in for a service that stalls or answers with an error.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import anyio
import psutil
import pytest
from lifecycle_support import start_and_connect, suspend

from {{ cookiecutter.package_name }}.client import (
    CALL_TIMEOUT_ENV,
    TOKEN_ENV,
    URL_ENV,
    Client,
    RemoteError,
    ServiceTimeoutError,
    call_timeout,
)
from {{ cookiecutter.package_name }}.demo.environment import Service, running_service
from {{ cookiecutter.package_name }}.probe import probe

BACKENDS = ["trio", "asyncio"]  # Grain runs trio; the client is anyio code and runs under both


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The service with a short call limit, its settings in the head's environment."""
    monkeypatch.setenv(CALL_TIMEOUT_ENV, "0.5")
    with running_service() as running:
        for name, value in running.env.items():
            monkeypatch.setenv(name, value)
        yield running


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan"])
def test_a_bad_call_timeout_names_the_variable(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CALL_TIMEOUT_ENV, raw)
    with pytest.raises(ValueError, match=CALL_TIMEOUT_ENV):
        call_timeout()


def test_the_default_fits_long_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CALL_TIMEOUT_ENV, raising=False)
    assert call_timeout() == 3600


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_to_a_stopped_service_raise_within_the_limit_naming_it(backend: str, service: Service) -> None:
    if service.process is None:
        pytest.skip("needs a local stand-in to stop (STAND_IN_COMMAND in demo/environment.py)")
    process = psutil.Process(service.process.pid)

    async def main() -> None:
        async with start_and_connect() as (client, _):
            await probe(client, 0)
            suspend(process)  # SIGSTOP: the kernel still takes the request, nothing answers
            try:
                started = time.monotonic()
                with pytest.raises(ServiceTimeoutError) as raised:
                    await probe(client, 1)
                elapsed = time.monotonic() - started
            finally:
                process.resume()
            assert 0.4 < elapsed < 2.5, elapsed
            assert URL_ENV in str(raised.value) and CALL_TIMEOUT_ENV in str(raised.value)
            await probe(client, 2)  # answers again once the service runs

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("suffix", ["", "/"])
def test_a_base_url_with_a_path_and_any_trailing_slash_works(suffix: str, service: Service) -> None:
    async def main() -> None:
        client = Client(service.env[URL_ENV] + suffix, service.env[TOKEN_ENV])
        try:
            for variant in range(3):
                await probe(client, variant)
        finally:
            await client.aclose()

    anyio.run(main, backend="trio")


def test_a_service_that_accepts_but_never_answers_fails_the_call_in_time() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens; the kernel accepts, nobody reads
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"

        async def main() -> float:
            client = Client(url, "token", call_timeout=0.3)
            try:
                started = time.monotonic()
                with pytest.raises(ServiceTimeoutError, match=rf"0\.3 s.*{CALL_TIMEOUT_ENV}"):
                    await probe(client)
                return time.monotonic() - started
            finally:
                await client.aclose()

        elapsed = anyio.run(main, backend="trio")
    assert 0.25 < elapsed < 2.0, elapsed


class _Failing(BaseHTTPRequestHandler):
    """Answers every request with ``status`` and ``body``: a service that fails, or replies without a result."""

    status = 500
    body: ClassVar[dict[str, Any]] = {}
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        data = json.dumps(self.body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(500, {"error": "disk full"}, r"HTTP 500\): disk full", id="5xx"),
        pytest.param(429, {"error": "slow down"}, r"HTTP 429\): slow down", id="429"),
        pytest.param(200, {"answer": 1}, r"HTTP 200\)", id="no-result"),
        pytest.param(401, {}, f"refused the token in {TOKEN_ENV}", id="401"),
    ],
)
def test_an_error_reply_raises_with_what_the_service_said(status: int, body: dict[str, Any], expected: str) -> None:
    handler = type("Handler", (_Failing,), {"status": status, "body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:

        async def main() -> None:
            client = Client(f"http://127.0.0.1:{server.server_address[1]}/v1", "token", call_timeout=5)
            try:
                with pytest.raises(RemoteError, match=expected):
                    await probe(client)
            finally:
                await client.aclose()

        anyio.run(main, backend="trio")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
