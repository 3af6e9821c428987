"""Shared set-up for the template's own tests: baking packages and running them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import netns
import pytest
import slurm_cluster as slurm
from cookiecutter.main import cookiecutter

# A shell starts background jobs with SIGINT ignored, and the processes these tests start
# would inherit that: a Grain worker could then not be asked to leave. Take SIGINT back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TEMPLATE = Path(__file__).resolve().parents[1]
#: git with an identity of its own (a test machine may have none) and no commit signing.
GIT = ["git", "-c", "user.name=Template Tests", "-c", "user.email=tests@example.com", "-c", "commit.gpgsign=false"]
REPLAY_DIR = Path(__file__).resolve().parent / "replay"
#: One replay (answers) file per variant drives the test matrix.
VARIANTS = sorted(path.stem for path in REPLAY_DIR.glob("*.json"))
#: The files at the top of a generated package: what the author owns and what runs in production.
#: The local Grain harness and the stand-ins live in its ``demo/`` subpackage.
_SERVER_PRODUCTION_FILES = {
    "__init__.py",
    "the_sworker.py",
    "client.py",
    "client_support.py",
    "tasklet.py",
    "probe.py",
    "server_process.py",
    "lifeline.py",
    "py.typed",
    "grain_compat.py",  # the head survives a lost instance
    "instance_key.py",  # a stranger's instance never joins
}
PRODUCTION_FILES = {
    "server": _SERVER_PRODUCTION_FILES,  # JSON lines
    "server-http": _SERVER_PRODUCTION_FILES,
    "backendless": {
        *("__init__.py", "the_sworker.py", "client.py", "tasklet.py", "probe.py", "py.typed", "grain_compat.py"),
    },
}


def replay_answers(variant: str) -> dict[str, Any]:
    answers: dict[str, Any] = json.loads((REPLAY_DIR / f"{variant}.json").read_text())["cookiecutter"]
    return answers


def bake(output_dir: Path, **answers: Any) -> Path:
    """Bake the template with ``answers`` (the rest default) and return the project folder."""
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        extra_context=answers,
        output_dir=str(output_dir),
        default_config=True,
    )
    return Path(project)


def run(
    command: list[str], cwd: Path, *, timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``cwd`` with this interpreter's tools first on PATH."""
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.pop("PYTEST_ADDOPTS", None)
    full_env.update(env or {})
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def git(args: list[str], cwd: Path) -> str:
    """``git ARGS`` in ``cwd``, which must succeed; its output, stripped."""
    result = run([*GIT, *args], cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    """Commit everything in ``repo`` (made a git repository on branch main first if it is none yet); the commit."""
    if not (repo / ".git").exists():
        git(["init", "-q", "-b", "main"], repo)
    git(["add", "-A"], repo)
    git(["commit", "-q", "-m", message], repo)
    return git(["rev-parse", "HEAD"], repo)


def load_extensions() -> ModuleType:
    """The template's ``local_extensions.py``, imported from the template's folder as cookiecutter does."""
    sys.path.insert(0, str(TEMPLATE))
    try:
        import local_extensions
    finally:
        sys.path.remove(str(TEMPLATE))
    return local_extensions


@pytest.fixture(scope="session", autouse=True)
def instance_keys_kept_out_of_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The instance keys of the packages these tests bake and run (``~/.config/<package>/instance.key``
    by default) live in a temporary folder; a test that needs its own sets its own."""
    folder = tmp_path_factory.mktemp("instance-keys")
    with pytest.MonkeyPatch.context() as patch:
        for name in VARIANTS:
            package = replay_answers(name)["package_name"]
            patch.setenv(f"{package.upper()}_INSTANCE_KEY_FILE", str(folder / package / "instance.key"))
        yield


@pytest.fixture(scope="session", params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def baked(variant: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The variant's package baked from its replay answers (shared by the session)."""
    return bake(tmp_path_factory.mktemp(f"baked-{variant}"), **replay_answers(variant))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_slurm_cluster() -> None:
    """At the top of a test module that uses ``slurm_cluster``: where no cluster can run, the whole
    module skips with one line saying why; in CI it runs, and the fixture fails saying why."""
    reason = slurm.why_unavailable()
    if reason is not None and not in_ci():
        pytest.skip(f"no Slurm cluster here: {reason}", allow_module_level=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[slurm.SlurmCluster]:
    """A real Slurm cluster (``tests/slurm_cluster.py``), SLURM_CONF exported for the session.

    Where none can run, CI (``CI=true``) fails, saying why, and elsewhere the tests skip with the reason.
    """
    try:
        with slurm.cluster() as cluster, pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", str(cluster.conf))
            yield cluster
            return
    except netns.Unavailable as exc:  # raised before the yield: missing commands, or no namespaces here
        reason = str(exc)
    if in_ci():
        pytest.fail(f"CI runs the Slurm cluster tests, but no cluster can run here: {reason}", pytrace=False)
    pytest.skip(f"no Slurm cluster here: {reason}")
