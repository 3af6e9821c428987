"""Lifecycle faults of the backendless sworker: credentials, a vanishing service, cancellation, leaks.

Everything runs under trio, as Grain runs it. Every process a test starts is
ended by its pid, and every test checks that nothing it started is left.
"""

from __future__ import annotations

import ast
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from demo_support import demo
from lifecycle_support import (
    PROJECT,
    SWORKER,
    descendants,
    head_process,
    listening_addresses,
    run_trio,
    signal_the_demo,
    start_and_connect,
    wait_until,
)

from {{ cookiecutter.package_name }} import the_sworker
from {{ cookiecutter.package_name }}.client import (
    TOKEN_ENV,
    URL_ENV,
    MissingSettingError,
    RemoteError,
    ServiceUnavailableError,
)
from {{ cookiecutter.package_name }}.demo.environment import local_service
from {{ cookiecutter.package_name }}.demo.local_grain import local_grain

PACKAGE = PROJECT / "{{ cookiecutter.package_name }}"
pytestmark = pytest.mark.usefixtures("nothing_left_behind")


@pytest.fixture(scope="module")
def service_env() -> Iterator[dict[str, str]]:
    """The loopback demo service, and the environment the head needs to reach it."""
    with local_service() as env:
        yield env


@pytest.fixture(autouse=True)
def head_environment(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in service_env.items():
        monkeypatch.setenv(name, value)


# --- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [URL_ENV, TOKEN_ENV])
def test_a_missing_setting_is_a_clear_error_naming_the_variable(missing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(missing)

    async def main() -> None:
        with pytest.raises(MissingSettingError, match=f"set the environment variable {missing} "):
            async with start_and_connect():
                pytest.fail("started without the setting")

    run_trio(main)


def test_the_token_is_never_yielded_logged_or_written(
    service_env: dict[str, str], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    token = service_env[TOKEN_ENV]
    caplog.set_level(logging.DEBUG)
    yielded: list[dict[str, object]] = []

    async def main() -> None:
        async with the_sworker.grain_run_sworker() as fields:
            yielded.append(dict(fields))
            fields = dict(fields)
            fields.pop("name")
            async with the_sworker.grain_context(**fields) as client:
                assert await client.square(3.0) == 9.0
                assert token not in repr(client)

    run_trio(main)
    assert token not in repr(yielded)
    assert token not in caplog.text
    out, err = capfd.readouterr()
    assert token not in out + err
    for path in PROJECT.rglob("*"):
        if path.is_file() and ".pytest_cache" not in path.parts and "__pycache__" not in path.parts:
            assert token.encode() not in path.read_bytes(), path


def test_a_wrong_token_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "wrong")

    async def main() -> None:
        async with start_and_connect() as (client, _):
            with pytest.raises(RemoteError, match=f"refused the token in {TOKEN_ENV}"):
                await client.square(2.0)

    run_trio(main)


# --- faults while running ----------------------------------------------------------------------


def test_a_service_that_is_gone_makes_every_call_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    from {{ cookiecutter.package_name }}.demo.local_grain import free_port

    monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{free_port()}")

    async def main() -> None:
        async with start_and_connect() as (client, _):
            for _ in range(3):
                with pytest.raises(ServiceUnavailableError, match=URL_ENV):
                    result = await client.square(4.0)
                    pytest.fail(f"a call to a missing service returned {result!r}")

    run_trio(main)


def test_a_tasklet_error_says_what_went_wrong() -> None:
    async def main() -> None:
        async with start_and_connect() as (client, _):
            with pytest.raises(RemoteError, match=r"failed 'square' \(HTTP 400\): square needs a number"):
                await client.call("square", x="not a number")

    run_trio(main)


# httpx's own request body is an async generator, which trio reports when a call is cancelled
# mid-send (encode/httpx#3686; a fix is proposed in encode/httpx#3777). Nothing of ours stays open:
# this test proves the client goes on working. The mark outranks `-W error` for this test alone.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <async_generator object ByteStream.__aiter__:pytest.PytestUnraisableExceptionWarning"
)
def test_cancellation_during_calls_leaves_the_client_usable() -> None:
    async def main() -> None:
        async with start_and_connect() as (client, _):
            for i in range(20):
                with anyio.move_on_after(0.0005 * (i % 5)):
                    await client.square(float(i))
            assert await client.square(7.0) == 49.0

    run_trio(main)


# --- no leaks ---------------------------------------------------------------------------------


def test_one_hundred_start_stop_cycles_leak_nothing() -> None:
    me = psutil.Process()

    async def cycle() -> None:
        async with start_and_connect() as (client, _):
            assert await client.square(2.0) == 4.0

    async def main() -> None:
        await cycle()  # warm-up: the event loop's own descriptors
        fds = me.num_fds()
        listening = sum(1 for c in me.net_connections("tcp") if c.status == psutil.CONN_LISTEN)
        for _ in range(100):
            await cycle()
        # Fewer than before is fine: something from an earlier test may have been collected meanwhile.
        assert me.num_fds() <= fds
        assert sum(1 for c in me.net_connections("tcp") if c.status == psutil.CONN_LISTEN) <= listening

    run_trio(main)


# --- security ---------------------------------------------------------------------------------


def test_no_shell_anywhere_and_the_demo_service_binds_loopback() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "shell":
                pytest.fail(f"{path.name}: shell= used")
            if isinstance(node, ast.Attribute) and node.attr in {"system", "popen", "create_subprocess_shell"}:
                pytest.fail(f"{path.name}: {node.attr} used")
    from {{ cookiecutter.package_name }}.demo.local_grain import free_port

    port = free_port()
    env = {**os.environ, TOKEN_ENV: "t0ken"}
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}.demo.service", "--port", str(port)]
    assert listening_addresses(command, env) == ["127.0.0.1"]


# --- real Grain: signals and tasklet failures ---------------------------------------------------


@pytest.mark.real_grain
def test_sigint_to_the_head_ends_it_with_nothing_left(tmp_path: Path, service_env: dict[str, str]) -> None:
    with local_grain(SWORKER, capacity=3, idle_quit="1s", env=service_env) as grain:
        with head_process("slow", grain.config_path, tmp_path, service_env) as head:
            wait_until(lambda: (tmp_path / "progress").exists(), 30, "first result")
            head.send_signal(signal.SIGINT)
            wait_until(lambda: head.poll() is not None, 10, "head exits on SIGINT")
            assert descendants(head.pid) == []


@pytest.mark.real_grain
def test_a_failing_tasklet_is_retried_three_times_then_the_head_waits_forever(
    tmp_path: Path, service_env: dict[str, str]
) -> None:
    with local_grain(SWORKER, capacity=3, idle_quit="1s", env=service_env) as grain:
        with head_process("fail", grain.config_path, tmp_path, service_env) as head:
            wait_until(lambda: (tmp_path / "head.log").read_text().count("square needs a number") >= 3, 30, "3 tries")
            time.sleep(1)  # a bounded wait: no fourth try, no result
            log = (tmp_path / "head.log").read_text()
            assert "RESULT" not in log
            # Grain 0.17 then waits forever (or, sometimes, crashes with KeyError: the instance name).
            assert head.poll() is None or "KeyError" in log, log[-3000:]
            assert "failed 'square' (HTTP 400): square needs a number, got 'not a number'" in log


@pytest.mark.real_grain
@pytest.mark.parametrize(
    ("signum", "limit"),
    [pytest.param(signal.SIGTERM, 10.0, id="SIGTERM"), pytest.param(signal.SIGKILL, 5.0, id="SIGKILL")],
)
def test_the_demo_service_never_outlives_its_head(signum: signal.Signals, limit: float, tmp_path: Path) -> None:
    """The demo (the head) started the service and Gnaw: its cleanup ends them on SIGTERM, their guards on SIGKILL."""
    with demo(tmp_path, "--tasks", "100000") as run:
        signal_the_demo(run, signum, limit, "gnaw", "demo.service")
    if signum == signal.SIGTERM:  # it handled SIGTERM (as SIGINT), and so ran its cleanup
        assert run.process.returncode != -signal.SIGTERM, run.output()
