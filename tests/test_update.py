"""Updates: a package baked from an earlier template commit, updated with cruft, equals a fresh bake.

The template is committed twice into a throwaway git repository: an "earlier" commit (today's
template with some files missing, one changed and one obsolete file added) and then today's
template. Packages baked from the earlier commit are updated to the newer one with ``cruft update``,
offline, from the local path, and must equal a fresh bake with the same answers, pass the
conformance suite, and be reported up to date by ``cruft check``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import TEMPLATE, commit_all, git, replay_answers, run
from cookiecutter.main import cookiecutter

#: What the template is made of (everything else in the repository is its own tooling).
TEMPLATE_PARTS = ("cookiecutter.json", "local_extensions.py", "hooks", "{{cookiecutter.package_name}}")
PROJECT_DIR = "{{cookiecutter.package_name}}"
#: cruft clones the template with git: allow only local paths, so nothing reaches a network.
OFFLINE = {"GIT_ALLOW_PROTOCOL": "file"}
SKIP_IN_TREE = {".git", ".cruft.json", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}


def copy_template(target: Path) -> None:
    """Copy today's template (only its parts) into ``target``, replacing what was there."""
    for part in TEMPLATE_PARTS:
        destination = target / part
        if destination.is_dir():
            shutil.rmtree(destination)
        source = TEMPLATE / part
        if source.is_dir():
            shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, destination)


def make_earlier(template: Path) -> None:
    """Turn today's template into a plausible earlier one."""
    project = template / PROJECT_DIR
    (project / "CHANGELOG.md").unlink()
    shutil.rmtree(project / ".github")
    (project / "OBSOLETE.md").write_text("# Notes the template dropped later\n")
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '"mypy>=1.10",' in text
    pyproject.write_text(text.replace('"mypy>=1.10",', '"mypy>=1.5",'))


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A git repository holding the template at an earlier commit, then at today's state."""
    repo = tmp_path_factory.mktemp("template-repo")
    copy_template(repo)
    make_earlier(repo)
    earlier = commit_all(repo, "earlier template")
    copy_template(repo)  # replaces the project folder: OBSOLETE.md goes
    newer = commit_all(repo, "newer template")
    return {"path": repo, "earlier": earlier, "newer": newer}


def tree(project: Path) -> dict[str, bytes]:
    """Every file of a project by relative path, without VCS, cruft state and caches."""
    files = {}
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project)
        if path.is_file() and not SKIP_IN_TREE.intersection(relative.parts):
            files[str(relative)] = path.read_bytes()
    return files


def differences(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    only_got = sorted(set(got) - set(want))
    only_want = sorted(set(want) - set(got))
    changed = sorted(name for name in set(got) & set(want) if got[name] != want[name])
    return [f"only in the updated package: {only_got}", f"missing: {only_want}", f"differ: {changed}"]


def cruft(args: list[str], cwd: Path) -> str:
    result = run(["cruft", *args], cwd, timeout=120, env=OFFLINE)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_updated_like_fresh(updated: Path, fresh: Path) -> None:
    got, want = tree(updated), tree(fresh)
    assert got == want, differences(got, want)
    assert not list(updated.rglob("*.rej")) and not list(updated.rglob("*.orig"))
    status = git(["status", "--porcelain"], updated)
    assert "U" not in {line[:2].strip() for line in status.splitlines()}, status  # no unmerged paths


def assert_conformance_passes(project: Path) -> None:
    result = run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sworker_conformance"], project)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.strip().splitlines()[-1]


def assert_cruft_diff_shows_own_edits_reversed(project: Path, tmp_path: Path) -> None:
    """Why the generated README does not call `cruft diff` a preview of an update (the edit is undone after)."""
    with (project / "README.md").open("a") as readme:
        readme.write("\nA line of my own.\n")
    commit_all(project, "an edit of my own")
    shown = cruft(["diff", "--project-dir", str(project)], tmp_path)
    assert "-A line of my own." in shown  # the user's edit, reversed
    assert "CHANGELOG.md" not in shown and "OBSOLETE.md" not in shown  # nothing of the newer template
    assert "Created the" not in shown
    git(["reset", "-q", "--hard", "HEAD~1"], project)


@pytest.mark.parametrize("variant", ["server", "backendless"])
def test_cruft_update_from_an_earlier_commit_equals_a_fresh_bake(
    variant: str, template_repo: dict[str, Any], tmp_path: Path
) -> None:
    answers = replay_answers(variant)
    package = answers["package_name"]
    source = str(template_repo["path"])
    context = json.dumps(answers)

    created = cruft(["create", "--no-input", "--checkout", template_repo["earlier"], "--extra-context", context,
                     "--output-dir", str(tmp_path / "old"), source], tmp_path)  # fmt: skip
    assert created.count(f"Created the {variant} sworker package") == 1
    project = tmp_path / "old" / package
    assert not (project / "CHANGELOG.md").exists() and (project / "OBSOLETE.md").exists()
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == template_repo["earlier"]
    assert json.loads((project / ".template-answers.json").read_text())["_commit"] == template_repo["earlier"]
    commit_all(project, "baked")  # a git repository with everything committed, as a user's would be
    if variant == "server":
        assert_cruft_diff_shows_own_edits_reversed(project, tmp_path)

    updated = cruft(["update", "--skip-apply-ask", "--project-dir", str(project)], tmp_path)
    review = git(["diff", "HEAD"], project)  # as the generated README says: review, then commit or reset
    assert "+++ b/CHANGELOG.md" in review and "--- a/OBSOLETE.md" in review, review[-3000:]
    assert '-    "mypy>=1.5",' in review and '+    "mypy>=1.10",' in review
    assert "Created the" not in updated  # cruft's renders of the old and new template are not bakes
    cruft(
        ["create", "--no-input", "--extra-context", context, "--output-dir", str(tmp_path / "fresh"), source], tmp_path
    )
    fresh = tmp_path / "fresh" / package

    assert_updated_like_fresh(project, fresh)
    updated_state = json.loads((project / ".cruft.json").read_text())
    fresh_state = json.loads((fresh / ".cruft.json").read_text())
    assert updated_state["commit"] == fresh_state["commit"] == template_repo["newer"]
    assert updated_state["context"] == fresh_state["context"]
    assert json.loads((project / ".template-answers.json").read_text())["_commit"] == template_repo["newer"]
    cruft(["check", "--project-dir", str(project)], tmp_path)
    assert_conformance_passes(project)


def test_a_cookiecutter_bake_links_with_its_recorded_answers_and_updates(
    template_repo: dict[str, Any], tmp_path: Path
) -> None:
    """The README's path for packages made with plain cookiecutter: cruft link, then cruft update."""
    answers = replay_answers("backendless")
    source = str(template_repo["path"])
    earlier_template = tmp_path / "earlier-template"
    git(["worktree", "add", "-q", "--detach", str(earlier_template), template_repo["earlier"]], template_repo["path"])
    try:
        project = Path(
            cookiecutter(
                str(earlier_template),
                no_input=True,
                extra_context=answers,
                output_dir=str(tmp_path / "old"),
                default_config=True,
            )
        )
    finally:
        git(["worktree", "remove", "--force", str(earlier_template)], template_repo["path"])
    recorded = (project / ".template-answers.json").read_text()
    assert json.loads(recorded)["_commit"] == template_repo["earlier"]  # read from the template's .git
    assert "_template" not in json.loads(recorded)  # a local folder: no path of this machine is recorded
    commit_all(project, "baked")  # a git repository with everything committed, as a user's would be

    cruft(["link", "--no-input", "--checkout", json.loads(recorded)["_commit"], "--extra-context", recorded,
           "--project-dir", str(project), source], tmp_path)  # fmt: skip
    git(["add", ".cruft.json"], project)
    git(["commit", "-q", "-m", "link to the template"], project)
    assert "Created the" not in cruft(["update", "--skip-apply-ask", "--project-dir", str(project)], tmp_path)

    fresh = Path(
        cookiecutter(
            source, no_input=True, extra_context=answers, output_dir=str(tmp_path / "fresh"), default_config=True
        )
    )
    assert_updated_like_fresh(project, fresh)
    assert json.loads((project / ".cruft.json").read_text())["commit"] == template_repo["newer"]
    assert_conformance_passes(project)
