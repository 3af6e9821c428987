"""Bounded calls: a service that stops answering fails each call within the limit, naming it.

The loopback demo service stands in for the remote one; a listening socket that
never answers stands in for a service that accepts connections and then stalls.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import anyio
import psutil
import pytest
from lifecycle_support import descendants, start_and_connect, suspend

from {{ cookiecutter.package_name }}.client import (
    CALL_TIMEOUT_ENV,
    URL_ENV,
    Client,
    ServiceTimeoutError,
    call_timeout,
)
from {{ cookiecutter.package_name }}.demo.environment import local_service

BACKENDS = ["trio", "asyncio"]  # Grain runs trio; the client is anyio code and runs under both


@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The loopback demo service with a short call limit, and the head's environment to reach it."""
    monkeypatch.setenv(CALL_TIMEOUT_ENV, "0.5")
    with local_service() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield env


def the_service(url: str) -> psutil.Process:
    """The service process behind ``url`` (others may run, e.g. the conformance kit's)."""
    port = url.rsplit(":", 1)[1]
    module = "{{ cookiecutter.package_name }}.demo.service"
    (service,) = [p for p in descendants(os.getpid()) if module in p.cmdline() and port in p.cmdline()]
    return service


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan"])
def test_a_bad_call_timeout_names_the_variable(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CALL_TIMEOUT_ENV, raw)
    with pytest.raises(ValueError, match=CALL_TIMEOUT_ENV):
        call_timeout()


def test_the_default_fits_long_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CALL_TIMEOUT_ENV, raising=False)
    assert call_timeout() == 3600


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_to_a_stopped_service_raise_within_the_limit_naming_it(backend: str, service_env: dict[str, str]) -> None:
    async def main() -> None:
        async with start_and_connect() as (client, _):
            assert await client.square(2.0) == 4.0
            service = the_service(service_env[URL_ENV])
            suspend(service)  # SIGSTOP: the kernel still takes the request, nothing answers
            try:
                started = time.monotonic()
                with pytest.raises(ServiceTimeoutError) as raised:
                    await client.square(3.0)
                elapsed = time.monotonic() - started
            finally:
                service.resume()
            assert 0.4 < elapsed < 2.5, elapsed
            assert service_env[URL_ENV] in str(raised.value)
            assert "0.5 s" in str(raised.value) and CALL_TIMEOUT_ENV in str(raised.value)
            assert await client.square(4.0) == 16.0  # answers again once the service runs

    anyio.run(main, backend=backend)


def test_a_service_that_accepts_but_never_answers_fails_the_call_in_time() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens; the kernel accepts, nobody reads
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"

        async def main() -> float:
            client = Client(url, "token", call_timeout=0.3)
            try:
                started = time.monotonic()
                with pytest.raises(ServiceTimeoutError, match=rf"{url}.*0\.3 s.*{CALL_TIMEOUT_ENV}"):
                    await client.square(2.0)
                return time.monotonic() - started
            finally:
                await client.aclose()

        elapsed = anyio.run(main, backend="trio")
    assert 0.25 < elapsed < 2.0, elapsed
