"""The local stand-in service itself (``demo/service.py``): delete this file together with it.

Only what the stand-in promises is checked here: its API below ``/v1``, its token check, its
error texts and body limit, and that it listens on loopback only. The other tests reach it only
through ``demo/environment.py`` and ``probe``.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from lifecycle_support import listening_addresses

from {{ cookiecutter.package_name }}.client import TOKEN_ENV, Client, RemoteError
from {{ cookiecutter.package_name }}.demo.local_grain import (
    child_environment,
    free_port,
    running_process,
    wait_for,
)

MODULE = "{{ cookiecutter.package_name }}.demo.service"
TOKEN = "stand-in-test-token"

pytestmark = pytest.mark.usefixtures("nothing_left_behind")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stand-in on a free loopback port, with ``TOKEN``; its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("stand-in") / "service.log"
    env = child_environment(MODULE, {TOKEN_ENV: TOKEN})
    with running_process([sys.executable, "-m", MODULE, "--port", str(port)], log, env) as process:
        wait_for(lambda: _listening(port), process, "the stand-in", Path(log))
        yield f"http://127.0.0.1:{port}/v1"


def post(base_url: str, path: str, body: Any = None, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with httpx.Client(timeout=10) as http:
        return http.post(base_url + path, json=body, headers=headers, **kwargs)


def test_it_squares_below_its_base_path(base_url: str) -> None:
    reply = post(base_url, "/square", {"x": 3})
    assert (reply.status_code, reply.json()) == (200, {"result": 9})
    assert post(base_url.removesuffix("/v1"), "/square", {"x": 3}).status_code == 404


@pytest.mark.parametrize("token", [None, "wrong", TOKEN[:-1], TOKEN + "x"])
def test_it_refuses_callers_without_the_token(base_url: str, token: str | None) -> None:
    reply = post(base_url, "/square", {"x": 3}, token=token)
    assert (reply.status_code, reply.json()) == (401, {"error": "unauthenticated"})


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        pytest.param({"x": "not a number"}, 400, "square needs a number, got 'not a number'", id="not-a-number"),
        pytest.param({"x": True}, 400, "square needs a number, got True", id="bool"),
        pytest.param({}, 400, "square needs a number, got None", id="no-x"),
    ],
)
def test_it_answers_bad_arguments_with_an_error(base_url: str, body: Any, status: int, error: str) -> None:
    reply = post(base_url, "/square", body)
    assert (reply.status_code, reply.json()) == (status, {"error": error})


def test_it_refuses_a_body_that_is_not_json_or_too_large(base_url: str) -> None:
    assert post(base_url, "/square", content=b"{nope").json() == {"error": "the body is not JSON"}
    reply = post(base_url, "/square", content=b" " * (64 * 1024 + 1))
    assert reply.status_code == 413


def test_its_error_text_reaches_the_caller_through_the_client(base_url: str) -> None:
    async def main() -> None:
        client = Client(base_url, TOKEN, call_timeout=10)
        try:
            with pytest.raises(RemoteError, match=r"failed 'square' \(HTTP 400\): square needs a number"):
                await client.call("square", x="not a number")
        finally:
            await client.aclose()

    anyio.run(main, backend="trio")


def test_it_listens_on_loopback_only() -> None:
    command = [sys.executable, "-m", MODULE, "--port", str(free_port())]
    assert listening_addresses(command, child_environment(MODULE, {**os.environ, TOKEN_ENV: TOKEN})) == ["127.0.0.1"]
