"""A generated package looks like the field's best: recorded answers, idempotent hooks, license,
changelog, typing, pre-commit, CI, a Grain version check, and a wheel that Grain loads from a fresh
virtual environment."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: the generated YAML (CI workflow, pre-commit) must parse
from conftest import PRODUCTION_FILES, TEMPLATE, bake, commit_all, replay_answers, run
from cookiecutter.hooks import run_script_with_context
from hatchling.metadata.core import ProjectMetadata
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

LICENSE_MARKERS = {
    "MIT": ["MIT License", "Permission is hereby granted, free of charge"],
    "BSD-3-Clause": ["BSD 3-Clause License", "Neither the name of the copyright holder"],
    "Apache-2.0": [
        "Apache License",
        "Version 2.0, January 2004",
        "9. Accepting Warranty",
        "END OF TERMS AND CONDITIONS",
    ],
    "Proprietary": ["All rights reserved", "proprietary and confidential"],
}
PYPROJECT_LICENSE = {
    "MIT": "MIT",
    "BSD-3-Clause": "BSD-3-Clause",
    "Apache-2.0": "Apache-2.0",
    "Proprietary": "LicenseRef-Proprietary",
}
WHEEL_TIMEOUT = 240


def snapshot(project: Path) -> dict[str, str]:
    return {
        str(path.relative_to(project)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(project.rglob("*"))
        if path.is_file()
    }


def as_recorded(answers: dict[str, Any]) -> dict[str, Any]:
    """Answers as cookiecutter records them: booleans stay, everything else becomes text."""
    return {key: value if isinstance(value, bool) else str(value) for key, value in answers.items()}


# -- answers and hooks ---------------------------------------------------------------------------


def test_the_answers_are_recorded_for_updates(baked: Path, variant: str) -> None:
    recorded = json.loads((baked / ".template-answers.json").read_text())
    answers = as_recorded(replay_answers(variant))
    assert {key: recorded[key] for key in answers} == answers
    assert recorded["year"].isdigit()
    # The template's commit, which `cruft link --checkout` needs; never a path of this machine:
    # this bake came from a local folder, so no `_template`.
    template_commit = run(["git", "rev-parse", "HEAD"], TEMPLATE)
    expected = {"_commit": template_commit.stdout.strip()} if template_commit.returncode == 0 else {}
    assert {key: value for key, value in recorded.items() if key.startswith("_")} == expected


def test_post_gen_hook_is_idempotent(variant: str, tmp_path: Path) -> None:
    """cruft re-runs post_gen on update: on a finished package it changes nothing and succeeds."""
    project = bake(tmp_path, **replay_answers(variant))  # a clean bake: the shared one gathers caches
    before = snapshot(project)
    answers = json.loads((project / ".template-answers.json").read_text())
    for _ in range(2):
        run_script_with_context(
            str(TEMPLATE / "hooks" / "post_gen_project.py"), str(project), {"cookiecutter": answers}
        )
    assert snapshot(project) == before


# -- license, changelog, typing ------------------------------------------------------------------


@pytest.mark.parametrize("license_name", sorted(LICENSE_MARKERS))
def test_the_license_file_is_the_chosen_one_with_author_and_year(license_name: str, tmp_path: Path) -> None:
    project = bake(tmp_path, license=license_name, author_name="Ada Lovelace", year="2031", package_name="lic_pkg")
    names = sorted(path.name for path in project.iterdir() if path.name.startswith("LICENSE"))
    assert names == ["LICENSE"]
    text = (project / "LICENSE").read_text()
    for marker in LICENSE_MARKERS[license_name]:
        assert marker in text, marker
    assert "2031" in text and "Ada Lovelace" in text
    assert "[yyyy]" not in text and "[name of copyright owner]" not in text
    if license_name == "Apache-2.0":
        assert len(text) > 11_000  # the full text, not a notice
    project_table = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert project_table["license"] == PYPROJECT_LICENSE[license_name]
    assert project_table["license-files"] == ["LICENSE"]
    core = ProjectMetadata(str(project), None).core  # what hatchling builds from: it checks the classifiers
    assert core.license_expression == PYPROJECT_LICENSE[license_name]
    private = license_name == "Proprietary"
    assert ("Private :: Do Not Upload" in core.classifiers) is private
    assert not [c for c in core.classifiers if c.startswith("License ::")]
    assert (project / ".github" / "workflows" / "release.yml").exists() is not private


def test_project_urls_come_from_the_repository_answer(baked: Path, variant: str) -> None:
    """The server replay gives a GitHub address; the backendless one none, so no placeholders are published."""
    url = replay_answers(variant)["repository_url"]
    expected = (
        {"Repository": url, "Issues": f"{url}/issues", "Changelog": f"{url}/blob/main/CHANGELOG.md"} if url else None
    )
    assert tomllib.loads((baked / "pyproject.toml").read_text())["project"].get("urls") == expected
    assert ProjectMetadata(str(baked), None).core.urls == (expected or {})


def test_changelog_py_typed_and_gitignore(baked: Path, variant: str) -> None:
    answers = replay_answers(variant)
    changelog = (baked / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{answers['version']}]" in changelog
    assert (baked / answers["package_name"] / "py.typed").is_file()
    ignored = (baked / ".gitignore").read_text().split()
    assert {"__pycache__/", "dist/", ".mypy_cache/"} <= set(ignored)
    assert "*.rej" not in ignored  # a conflicted cruft update must show in git status


def test_mypy_strict_passes_as_generated(baked: Path, variant: str) -> None:
    config = tomllib.loads((baked / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert config["files"] == [replay_answers(variant)["package_name"]]
    result = run(["mypy"], baked)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


# -- pre-commit and CI ---------------------------------------------------------------------------


def test_pre_commit_config_is_local_only(baked: Path) -> None:
    """No hook repository to clone (no network), and the tools come from the project's environment."""
    config = yaml.safe_load((baked / ".pre-commit-config.yaml").read_text())
    assert config["minimum_pre_commit_version"] == "4.4.0"  # `language: unsupported`
    assert {repo["repo"] for repo in config["repos"]} <= {"local", "meta"}
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy", "no-trailing-whitespace", "no-merge-conflict-markers"} <= set(hooks)
    for hook_id in ("ruff-check", "ruff-format", "mypy"):
        assert hooks[hook_id]["language"] == "unsupported"
        assert hooks[hook_id]["entry"].startswith("sh tools/in-project-env "), hook_id
    assert all(hooks[name]["language"] == "pygrep" for name in hooks if name.startswith(("no-", "one-")))
    assert os.access(baked / "tools" / "in-project-env", os.X_OK)  # also runs by hand


@functools.cache
def without_network() -> list[str]:
    """A command prefix that runs in a new network namespace (no interface up), where this user may make one.

    Elsewhere the hooks still cannot reach a network: the config names no hook repository.
    """
    offline = ["unshare", "--net", "--"]
    if shutil.which("unshare") and subprocess.run([*offline, "true"], capture_output=True, timeout=30).returncode == 0:
        return offline
    return []


def run_pre_commit(project: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pre-commit run`` as from a fresh shell: the venv not on PATH, no VIRTUAL_ENV, and no network."""
    env = {"PATH": os.pathsep.join(("/usr/bin", "/bin")), "HOME": str(home), "PRE_COMMIT_HOME": str(home / "cache")}
    command = [*without_network(), str(Path(sys.executable).with_name("pre-commit")), "run", *args]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=240)


def test_pre_commit_passes_offline_outside_the_environment_and_catches_a_bad_file(tmp_path: Path) -> None:
    """The README's `pre-commit run --all-files` on a fresh package: its environment in .venv/, not activated."""
    project = bake(tmp_path / "bake", **replay_answers("server"))
    commit_all(project, "baked")
    (project / ".venv").symlink_to(Path(sys.prefix))  # the project's environment, with ruff and mypy
    home = tmp_path / "home"

    result = run_pre_commit(project, home, "--all-files")
    assert result.returncode == 0, result.stdout + result.stderr
    for hook in ("ruff check", "ruff format", "mypy", "no trailing whitespace"):
        assert re.search(rf"^{re.escape(hook)}.*Passed$", result.stdout, re.MULTILINE), hook
    assert not (home / "cache").exists() or not any((home / "cache").glob("repo*"))  # nothing was cloned

    (project / "echo_lab" / "bad.py").write_text('import os\n\n\ndef f() -> int:\n    return "x"\n')
    (project / "NOTES.md").write_text("trailing space \n")
    commit_all(project, "bad")
    result = run_pre_commit(project, home, "--all-files")
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'bad.py:2: error: Incompatible return value type (got "str", expected "int")' in result.stdout  # ruff fixed
    assert "NOTES.md:1:trailing space" in result.stdout
    assert re.search(r"^ruff check.*Failed$", result.stdout, re.MULTILINE), result.stdout  # it removed `import os`

    (project / ".venv").unlink()  # no environment: the hook says what to install
    result = run_pre_commit(project, home, "mypy", "--all-files")
    assert result.returncode == 1
    assert "mypy is not installed in this project's environment" in result.stdout
    assert "pip install -e '.[demo]' --group dev" in result.stdout


def grain_requires_python() -> SpecifierSet:
    return SpecifierSet(metadata("grain-scheduler")["Requires-Python"])


def python_classifiers(project: dict[str, Any]) -> list[str]:
    prefix = "Programming Language :: Python :: 3."
    return [
        c.removeprefix("Programming Language :: Python :: ") for c in project["classifiers"] if c.startswith(prefix)
    ]


def test_ci_workflow_keeps_github_expressions_and_runs_the_suites(baked: Path) -> None:
    text = (baked / ".github" / "workflows" / "tests.yml").read_text()
    assert "${{ matrix.python-version }}" in text and "${{ github.ref }}" in text
    workflow = yaml.safe_load(text)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert "permissions" not in job
    steps = job["steps"]
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    commands = "\n".join(step.get("run", "") for step in steps)
    expected_commands = [
        "pip install -e '.[demo]' --group dev",
        "pre-commit run --all-files",
        "pytest tests/sworker_conformance",
        'pytest -m "not conformance"',
        "python -m build",
    ]
    for expected in expected_commands:
        assert expected in commands, expected


def test_ci_tests_three_pythons_grain_supports_the_ones_classified(baked: Path) -> None:
    (job,) = yaml.safe_load((baked / ".github" / "workflows" / "tests.yml").read_text())["jobs"].values()
    matrix = job["strategy"]["matrix"]["python-version"]
    project = tomllib.loads((baked / "pyproject.toml").read_text())["project"]
    assert len(matrix) >= 3
    assert matrix == python_classifiers(project)
    for python in matrix:
        assert Version(python) in SpecifierSet(project["requires-python"]), python
        assert Version(python) in grain_requires_python(), python  # Grain 0.17.1's wheel: Requires-Python
    assert "Typing :: Typed" in project["classifiers"]
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # PEP 639: `license` says it


def workflow_texts(project: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted((project / ".github" / "workflows").glob("*.yml"))}


def test_actions_are_pinned_by_commit_and_checkouts_keep_no_credentials(baked: Path) -> None:
    texts = workflow_texts(baked)
    assert set(texts) == {"tests.yml", "release.yml"}
    used = 0
    for name, text in texts.items():
        for line in text.splitlines():
            if "uses:" in line:
                used += 1
                assert re.fullmatch(r"\s*(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+", line), (name, line)
        for job in yaml.safe_load(text)["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, name
    assert used >= 6


def test_release_publishes_by_trusted_publishing_from_a_separate_job(baked: Path, variant: str) -> None:
    text = workflow_texts(baked)["release.yml"]
    assert "secrets." not in text and "password" not in text  # no stored token
    workflow = yaml.safe_load(text)
    assert workflow.get("on", workflow.get(True)) == {"release": {"types": ["published"]}}
    assert workflow["permissions"] == {}
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    assert build["permissions"] == {"contents": "read"}
    assert any(step.get("uses", "").startswith("actions/upload-artifact@") for step in build["steps"])
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    name = replay_answers(variant)["package_name"].replace("_", "-")
    assert publish["environment"]["url"] == f"https://pypi.org/project/{name}/"
    uses = [step["uses"].split("@")[0] for step in publish["steps"]]
    assert uses == ["actions/download-artifact", "pypa/gh-action-pypi-publish"]


def test_dependabot_updates_the_actions_and_the_pip_dependencies(baked: Path) -> None:
    config = yaml.safe_load((baked / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    assert {update["package-ecosystem"] for update in config["updates"]} == {"github-actions", "pip"}


def test_the_dev_group_installs_with_pip(baked: Path) -> None:
    """The README's `pip install -e '.[demo]' --group dev` resolves: here offline, from what is installed,
    and not editable (hatchling's editable wheels need `editables`, which its isolated build gets)."""
    command = ["python", "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation"]
    result = run([*command, "--disable-pip-version-check", ".[demo]", "--group", "dev"], baked)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Would install" in result.stdout
    groups = tomllib.loads((baked / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    assert {Requirement(dep).name for dep in groups} >= {"pytest", "ruff", "mypy", "pre-commit", "build"}


# -- README --------------------------------------------------------------------------------------


def test_readme_covers_install_running_on_a_cluster_and_updating(baked: Path, variant: str) -> None:
    readme = (baked / "README.md").read_text()
    assert "python -m pip install -e '.[demo]' --group dev" in readme
    if variant.startswith("server"):
        assert "grain up -n" in readme and "Slurm" in readme and "PBS" in readme and "grain up --dry" in readme
    else:
        assert "No worker is needed: `grain up` says so and exits" in readme
    updating = readme.split("## Updating from the template", 1)[1].split("\n## ", 1)[0]
    for expected in ("cruft update", "cruft link", ".template-answers.json", ".cruft.json", "_commit"):
        assert expected in updating, expected
    # `cruft diff` compares with the recorded commit: it shows the user's own edits, not an update.
    assert "shows your own edits" in " ".join(updating.split()) and "cruft diff  " not in updating
    checks = readme.split("## Checks and releases", 1)[1].split("\n## ", 1)[0]
    assert "pre-commit install" in checks and "tools/in-project-env" in checks


# -- Grain version -------------------------------------------------------------------------------


def test_an_unsupported_grain_is_reported_clearly(baked: Path, variant: str, tmp_path: Path) -> None:
    """A grain-scheduler 0.18 found first on the path: the package's own test and check say so."""
    package = replay_answers(variant)["package_name"]
    fake = tmp_path / "fake-site" / "grain_scheduler-0.18.0.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: grain-scheduler\nVersion: 0.18.0\n")
    env = {"PYTHONPATH": str(fake.parent)}
    expected = f"grain-scheduler 0.18.0 is installed, but {package} supports grain-scheduler>=0.17,<0.18"

    result = run(
        ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_grain_version.py"], baked, env=env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout
    assert "1 failed" in result.stdout.strip().splitlines()[-1]
    assert "pip install 'grain-scheduler>=0.17,<0.18'" in result.stdout


# -- build, install, load ------------------------------------------------------------------------


def test_wheel_and_sdist_build_and_grain_loads_the_module_from_a_fresh_venv(tmp_path: Path) -> None:
    """One variant (server): build, install the wheel (deps from PyPI) in a new venv, load it there."""
    answers = replay_answers("server")
    package = answers["package_name"]
    project = bake(tmp_path / "bake", **answers)
    dist = tmp_path / "dist"
    result = run(
        ["python", "-m", "build", "--no-isolation", "--outdir", str(dist), "."], project, timeout=WHEEL_TIMEOUT
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")

    wheel_files = zipfile.ZipFile(wheel).namelist()
    top_level = {name.removeprefix(f"{package}/") for name in wheel_files if name.startswith(f"{package}/")}
    top_level = {name for name in top_level if "/" not in name}
    # The package's top level holds what runs in production; the harness and stand-ins live in demo/.
    assert top_level == PRODUCTION_FILES["server"], top_level
    assert f"{package}/demo/server.py" in wheel_files
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel_files)
    assert not [name for name in wheel_files if ".server." in name or ".backendless." in name]
    sdist_files = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
    for expected in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "grain.toml",
                     "tests/sworker_conformance/plugin.py", f"{package}/py.typed"):  # fmt: skip
        assert expected in sdist_files, expected

    venv = tmp_path / "venv"
    result = run([sys.executable, "-m", "venv", str(venv)], tmp_path, timeout=WHEEL_TIMEOUT)
    assert result.returncode == 0, result.stderr
    python = venv / "bin" / "python"
    result = run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)], tmp_path,
                 timeout=WHEEL_TIMEOUT)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"  # not the project: the module must come from the venv
    elsewhere.mkdir()
    load = (
        "import grain.util, importlib.metadata as m; "
        f"mod = grain.util.load_mod('{package}.the_sworker'); "
        "print(mod.__file__); print(m.version('grain-scheduler')); print(mod.GRAIN_SWORKER_CONFIG)"
    )
    result = run([str(python), "-c", load], elsewhere, env={"PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    module_file, grain_version, _ = result.stdout.strip().splitlines()[-3:]
    assert module_file.startswith(str(venv)) and module_file.endswith(f"{package}/the_sworker.py")
    assert grain_version.startswith("0.17.")

    shutil.copy(project / "grain.toml", elsewhere / "grain.toml")
    result = run([str(venv / "bin" / "grain"), "up", "--dry", "-c", "grain.toml"], elsewhere, env={"PYTHONPATH": ""})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"--sworker '{package}.the_sworker'" in result.stdout or f"{package}.the_sworker" in result.stdout
