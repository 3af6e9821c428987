"""An author puts in their own server by the generated README's checklist, and everything ends green.

Two swaps, done as the README says and nothing more:
- the stand-in itself, copied outside the package under another name (so nothing can find it by
  its module name), for each protocol;
- a real server with its real client library: Debian's redis-server with redis-py, through the
  README's recipe for a sync client library, its code taken from the README itself.
Each time the files the README's table marks ``delete`` are deleted, and then the sworker imports,
the demo gives every result right and the generated suite (the kit included) passes with ``-W error``.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import bake, in_ci, replay_answers, run

SUITE_TIMEOUT = 400
DEMO_TIMEOUT = 120
#: A row of the README's file table whose second column says the file goes: (its path, that column).
TABLE_ROW = re.compile(r"^\| `([^`]+)` \| ([^|]*) \|", re.M)


def marked_delete(readme: str) -> list[str]:
    """The files the README's table tells an author to delete with the stand-in."""
    return [path for path, whose in TABLE_ROW.findall(readme) if "delete" in whose.lower()]


def assert_theirs(readme: str, package: str, edited: list[str]) -> None:
    """Each edited file is one the README's table calls the author's: the swap touches no harness file."""
    theirs = {path for path, whose in TABLE_ROW.findall(readme) if "yours" in whose.lower()}
    assert {path.replace(f"{package}/", "PKG/") for path in theirs} >= {"PKG/the_sworker.py", "PKG/client.py"}
    assert not set(edited) - theirs, f"{sorted(set(edited) - theirs)} are not the author's in the README's table"


def recipe(readme: str, name: str) -> str:
    """The code block the README gives for ``name`` under ``<!-- recipe: name -->``."""
    found = re.search(rf"<!-- recipe: {re.escape(name)} -->\n```python\n(.*?)\n```", readme, re.S)
    assert found, f"the README has no recipe for {name}"
    return found[1] + "\n"


def set_server(the_sworker: Path, lines: str) -> None:
    """Replace ``SERVER_COMMAND`` (and ``SERVER_FILES``, where ``lines`` sets it) in the_sworker.py by ``lines``."""
    text = the_sworker.read_text()
    command = re.compile(r"^SERVER_COMMAND: list\[str\] = \[\n.*?^\]\n", re.M | re.S)
    files = re.compile(r"^SERVER_FILES: dict\[str, str\] = \{\}\n", re.M)
    assert command.search(text) and files.search(text), "the_sworker.py no longer reads as the README says"
    text = command.sub(lambda _: lines if "SERVER_FILES" in lines else lines + "\n", text, count=1)
    if "SERVER_FILES" in lines:
        text = files.sub("", text, count=1)
    the_sworker.write_text(text)


def delete_what_the_readme_marks(project: Path, package: str) -> list[str]:
    readme = (project / "README.md").read_text()
    marked = marked_delete(readme)
    assert sorted(marked) == sorted([f"{package}/demo/server.py", "tests/test_stand_in_server.py"]), marked
    for path in marked:
        (project / path).unlink()
    return marked


def assert_all_green(project: Path, package: str) -> None:
    """The sworker imports, the demo gives every result right, ruff is clean and the suite passes."""
    imported = run([sys.executable, "-c", f"import {package}.the_sworker, {package}.probe"], project)
    assert imported.returncode == 0, imported.stderr[-3000:]
    lint = run(["ruff", "check", "."], project)
    assert lint.returncode == 0, lint.stdout[-3000:]
    demo = run([sys.executable, "-m", f"{package}.demo", "--tasks", "60", "--json"], project, timeout=DEMO_TIMEOUT)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert '"wrong": 0' in demo.stdout.splitlines()[-1], demo.stdout[-2000:]
    pytest = ["python", "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"]
    suite = run(pytest, project, timeout=SUITE_TIMEOUT)
    summary = suite.stdout.strip().splitlines()[-1] if suite.stdout.strip() else ""
    assert suite.returncode == 0, suite.stdout[-6000:] + suite.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


@pytest.mark.parametrize("variant", ["server", "server-http"])
def test_the_stand_in_moved_outside_the_package_passes_as_the_authors_server(variant: str, tmp_path: Path) -> None:
    answers = replay_answers(variant)
    package = answers["package_name"]
    project = bake(tmp_path / "bake", **answers)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = shutil.copy(project / package / "demo" / "server.py", elsewhere / "my_server.py")
    delete_what_the_readme_marks(project, package)
    assert_theirs((project / "README.md").read_text(), package, [f"{package}/the_sworker.py"])
    set_server(
        project / package / "the_sworker.py",
        f'SERVER_COMMAND: list[str] = [\n    sys.executable,\n    "{server}",\n    "--host",\n    "{{host}}",\n'
        '    "--port",\n    "{port}",\n]\n',
    )
    assert_all_green(project, package)


def test_the_readme_recipe_for_a_sync_client_library_runs_a_real_redis_server(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        if in_ci():
            pytest.fail("CI runs the own-server tests, but redis-server is not installed", pytrace=False)
        pytest.skip("no redis-server here: apt-get install redis-server (scripts/test.sh does, as root)")
    pytest.importorskip("redis", reason="pip install redis (requirements-dev.txt has it)")
    answers = replay_answers("server")
    package = answers["package_name"]
    project = bake(tmp_path / "bake", **answers)
    readme = (project / "README.md").read_text()
    # 1. Dependencies: the client library.
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert "dependencies = [\n" in text
    pyproject.write_text(text.replace("dependencies = [\n", 'dependencies = [\n    "redis>=5",\n', 1))
    # 2, 3. The command and the secret (redis reads it from its config file only).
    set_server(project / package / "the_sworker.py", recipe(readme, "the_sworker.py"))
    # 4. The client: the README's recipe, word for word.
    (project / package / "client.py").write_text(recipe(readme, "client.py"))
    # 5. The recipe's client still offers square(): tasklet.py and probe.py stay as they are.
    # 6. Delete the stand-in and its tests, and the old client's tests.
    delete_what_the_readme_marks(project, package)
    (project / "tests" / "test_json_lines_client.py").unlink()
    assert_theirs(readme, package, ["pyproject.toml", f"{package}/the_sworker.py", f"{package}/client.py"])
    # 7. Everything green.
    assert_all_green(project, package)
    typed = run(["mypy", package], project)
    assert typed.returncode == 0, typed.stdout[-3000:]
