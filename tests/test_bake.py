"""Baking: each variant yields the seed's layout, clean code and a config Grain loads."""

from __future__ import annotations

import py_compile
import re
import shutil
import sys
import tomllib
from pathlib import Path

from conftest import PRODUCTION_FILES, bake, replay_answers, run
from grain.config import load_conf

EXPECTED_FILES = {
    "pyproject.toml",
    "README.md",
    "grain.toml",
    "grain.cluster.toml",
    "PKG/demo/batch.py",
    "PKG/demo/cluster.py",
    "PKG/demo/watch.py",
    "tests/demo_support.py",
    "tests/test_demo_faults.py",
    "PKG/demo/__init__.py",
    "PKG/demo/__main__.py",
    "PKG/demo/run.py",
    "PKG/demo/environment.py",
    "PKG/demo/local_grain.py",
    "tests/conftest.py",
    "tests/test_real_grain.py",
    "tests/sworker_conformance/plugin.py",
    "tools/in-project-env",
    ".pre-commit-config.yaml",
    ".github/workflows/tests.yml",
    ".github/dependabot.yml",
}
VARIANT_ONLY = {
    "server": {"PKG/demo/server.py", "PKG/lifeline.py", "tests/test_json_lines_client.py"},
    "server-http": {"PKG/demo/server.py", "PKG/lifeline.py", "tests/test_http_client.py"},
    "backendless": {"PKG/demo/service.py", "PKG/demo/lifeline.py"},
}
#: How a variant file's name in the template ends; none is left in a generated package.
VARIANT_SUFFIXES = (".server.", ".backendless.", ".jsonlines.", ".http.")
JINJA_RESIDUE = re.compile(r"(?<!\$)\{\{-?\s*\w|\{%-?\s|\s-?%\}|cookiecutter\.")


def files_of(project: Path) -> set[str]:
    return {str(path.relative_to(project)) for path in project.rglob("*") if path.is_file()}


def test_layout_matches_the_seed_and_holds_only_the_variants_files(baked: Path, variant: str) -> None:
    package = replay_answers(variant)["package_name"]
    files = files_of(baked)
    for expected in EXPECTED_FILES | VARIANT_ONLY[variant]:
        assert expected.replace("PKG", package) in files
    for other, other_files in VARIANT_ONLY.items():
        for unexpected in other_files - VARIANT_ONLY[variant]:
            assert unexpected.replace("PKG", package) not in files, other
    assert not [name for name in files if any(suffix in name for suffix in VARIANT_SUFFIXES)]
    top_level = {path.name for path in (baked / package).iterdir() if path.is_file()}
    assert top_level == PRODUCTION_FILES[variant], "the package's top level is the author's and production's"


def test_the_sworker_imports_with_the_demo_and_its_stand_ins_deleted(baked: Path, variant: str, tmp_path: Path) -> None:
    package = replay_answers(variant)["package_name"]
    copy = shutil.copytree(baked, tmp_path / "copy")
    shutil.rmtree(copy / package / "demo")
    load = f"import {package}.the_sworker as m, {package}.tasklet, {package}.probe; print(m.GRAIN_SWORKER_CONFIG)"
    result = run([sys.executable, "-c", load], copy)
    assert result.returncode == 0, result.stderr[-3000:]


def test_no_jinja_residue_and_every_python_file_compiles(baked: Path) -> None:
    for path in baked.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".toml", ".md", ".cfg", ".yaml", ".yml"}:
            assert not JINJA_RESIDUE.search(path.read_text()), path
        if path.suffix == ".py":
            py_compile.compile(str(path), doraise=True)


def test_generated_code_passes_ruff(baked: Path) -> None:
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        result = run(command, baked)
        assert result.returncode == 0, result.stdout + result.stderr


def test_grain_toml_loads_with_grains_loader(baked: Path, variant: str) -> None:
    answers = replay_answers(variant)
    config = load_conf(str(baked / "grain.toml"))
    assert config.worker.specialized_type == f"{answers['package_name']}.the_sworker"
    assert config.worker.res == {"Capacity": {"V": int(answers["capacity"])}}
    assert config.head.gnaw.enabled


def test_grain_cluster_toml_loads_with_grains_loader_and_grain_up_renders_it(baked: Path, variant: str) -> None:
    sworker = f"{replay_answers(variant)['package_name']}.the_sworker"
    config = load_conf(str(baked / "grain.cluster.toml"))
    assert config.worker.specialized_type == sworker
    assert config.head.gnaw.enabled and config.head.listen == config.worker.dial
    result = run([sys.executable, "-m", "grain.cli", "up", "--dry", "-c", "grain.cluster.toml"], baked)
    assert result.returncode == 0, result.stderr
    if variant == "backendless":
        assert "don't need to run a worker" in result.stderr
        return
    assert config.worker.system == "slurm" and config.worker.script.cores >= 1
    assert "#SBATCH --ntasks-per-node=" in result.stdout and f"--sworker '{sworker}'" in result.stdout
    countdown = re.search(r'"WTime": \{"T": "(\d+):(\d+):(\d+)", "countdown": true\}', result.stdout)
    assert countdown and countdown[1] != "00", "the walltime leaves the worker hours, not minutes"


def test_pyproject_parses_and_carries_the_answers(baked: Path, variant: str) -> None:
    answers = replay_answers(variant)
    project = tomllib.loads((baked / "pyproject.toml").read_text())["project"]
    assert project["version"] == answers["version"]
    assert project["description"] == answers["description"]
    assert project["authors"] == [{"name": answers["author_name"], "email": answers["author_email"]}]
    assert any(dep.startswith("grain-scheduler>=0.17,<0.18") for dep in project["dependencies"])


def test_the_protocol_answer_picks_the_client_and_the_stand_in(tmp_path: Path) -> None:
    for protocol, marker in (("json-lines", "JSON lines"), ("http", "HTTP")):
        package = f"pkg_{protocol.replace('-', '_')}"
        project = bake(tmp_path / protocol, protocol=protocol, package_name=package)
        for name in ("client.py", "demo/server.py"):
            assert marker in (project / package / name).read_text().split("\n", 1)[0], (protocol, name)
    backendless = bake(tmp_path / "backendless", backendless="yes", protocol="http", package_name="pkg_cloud")
    assert not (backendless / "pkg_cloud" / "client_support.py").exists()  # the question is the server's


def test_the_backendless_answer_picks_the_variant(tmp_path: Path) -> None:
    for answer, expected in (("yes", True), ("no", False), ("true", True), ("false", False)):
        project = bake(tmp_path / answer, backendless=answer, package_name=f"pkg_{answer}")
        source = (project / f"pkg_{answer}" / "the_sworker.py").read_text()
        assert ('"BACKENDLESS": True' in source) is expected, answer
