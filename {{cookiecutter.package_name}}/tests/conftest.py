"""Test set-up. The generic conformance kit (tests/sworker_conformance) is a pytest plugin."""

import signal
from collections.abc import Iterator
{%- if not cookiecutter.backendless %}
from pathlib import Path
{%- endif %}

import psutil
import pytest
from sworker_conformance.target import CallLimit
{% if cookiecutter.backendless %}
from {{ cookiecutter.package_name }}.client import CALL_TIMEOUT_ENV
{%- else %}
from {{ cookiecutter.package_name }}.client_support import CALL_TIMEOUT_ENV
from {{ cookiecutter.package_name }}.demo.environment import local_service
from {{ cookiecutter.package_name }}.instance_key import KEY_FILE_ENV
from {{ cookiecutter.package_name }}.the_sworker import LOG_DIR_ENV
{%- endif %}

pytest_plugins = ["sworker_conformance.plugin"]
#: The client's call limit in the conformance kit's runs of this package's sworker: the kit stalls the
#: server and waits for the call to raise (rule 13), so it is short there.
KIT_CALL_LIMIT = 0.5

# A shell starts background jobs with SIGINT ignored, and the processes these tests start
# would inherit that: a Grain worker could then not be asked to leave. Take SIGINT back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def sworker_call_limit() -> CallLimit:
    """The kit sets {{ cookiecutter.package_name | upper }}_CALL_TIMEOUT to this while it runs the sworker."""
    return CallLimit(KIT_CALL_LIMIT, CALL_TIMEOUT_ENV)


@pytest.fixture
def nothing_left_behind() -> Iterator[None]:
    """The test ends with no child process of its own left: not running, and not unreaped (a zombie).

    Those running before it started (e.g. a module's demo service) are not its own.
    """
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for process in left:
        process.kill()
    assert not left, [" ".join(p.cmdline()) for p in left]
{%- if not cookiecutter.backendless %}


@pytest.fixture(scope="session", autouse=True)
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The servers the tests start log into a temporary folder, not into this project."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(LOG_DIR_ENV, str(tmp_path_factory.mktemp("server-logs")))
        yield


@pytest.fixture(scope="session", autouse=True)
def instance_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The instance key the tests make (the head's and the workers') lives in a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_FILE_ENV, str(tmp_path_factory.mktemp("instance-key") / "instance.key"))
        yield


@pytest.fixture
def server_log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's servers log here, apart from every other test's: each notes its pid beside its log
    while it runs (``server_support.running_servers`` finds it so)."""
    path = tmp_path / "server-logs"
    path.mkdir()
    monkeypatch.setenv(LOG_DIR_ENV, str(path))
    return path


@pytest.fixture
def local_addresses(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment the sworker needs on one machine (loopback), as the demo sets it."""
    with local_service() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield
{%- endif %}
