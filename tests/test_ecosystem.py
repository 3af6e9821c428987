"""A generated package looks like the field's best: recorded answers, idempotent hooks, license,
changelog, typing, pre-commit, CI, a Grain version check, and a wheel that Grain loads from a fresh
virtual environment."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: the generated YAML (CI workflow, pre-commit) must parse
from conftest import PRODUCTION_FILES, TEMPLATE, bake, replay_answers, run
from cookiecutter.hooks import run_script_with_context

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
    assert not [key for key in recorded if key.startswith("_")]  # no paths of this machine


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


def test_pre_commit_config_runs_ruff_and_mypy(baked: Path) -> None:
    config = yaml.safe_load((baked / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy", "check-toml", "check-yaml"} <= set(hooks)
    assert all(repo["rev"] for repo in config["repos"] if repo["repo"] != "local")
    for hook_id in ("ruff-check", "ruff-format", "mypy"):  # their entries run as written here
        command = hooks[hook_id]["entry"].replace("python ", f"{sys.executable} ", 1).split()
        if hook_id == "ruff-check":
            command = [*command[:-1], "--no-fix", "."]  # check only: the shared bake must stay as it is
        elif hook_id == "ruff-format":
            command = [*command, "--check", "."]
        result = run(command, baked)
        assert result.returncode == 0, f"{hook_id}: {result.stdout}{result.stderr}"


def test_ci_workflow_keeps_github_expressions_and_runs_the_suites(baked: Path) -> None:
    text = (baked / ".github" / "workflows" / "tests.yml").read_text()
    assert "${{ matrix.python-version }}" in text and "${{ github.ref }}" in text
    workflow = yaml.safe_load(text)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = workflow["jobs"].values()
    assert job["strategy"]["matrix"]["python-version"]
    steps = job["steps"]
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    commands = "\n".join(step.get("run", "") for step in steps)
    expected_commands = [
        "pip install -e '.[demo]' --group dev",
        "pytest tests/sworker_conformance",
        'pytest -m "not conformance"',
        "ruff check",
        "ruff format --check",
        "mypy",
        "python -m build",
    ]
    for expected in expected_commands:
        assert expected in commands, expected


# -- README --------------------------------------------------------------------------------------


def test_readme_covers_install_running_on_a_cluster_and_updating(baked: Path, variant: str) -> None:
    readme = (baked / "README.md").read_text()
    assert "python -m pip install -e '.[demo]' --group dev" in readme
    if variant == "server":
        assert "grain up -n" in readme and "Slurm" in readme and "PBS" in readme and "grain up --dry" in readme
    else:
        assert "No worker is needed: `grain up` says so and exits" in readme
    updating = readme.split("## Updating from the template", 1)[1].split("\n## ", 1)[0]
    for expected in ("cruft update", "cruft link", ".template-answers.json", ".cruft.json"):
        assert expected in updating, expected


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
