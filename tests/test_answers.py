"""Bad answers are rejected before anything is written; free text renders safely in every mode."""

from __future__ import annotations

import json
import os
import py_compile
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEMPLATE, bake, load_extensions, replay_answers, run
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

#: Free text that breaks naive templates: quotes, backslashes, newlines, Jinja, comments, shell, non-ASCII.
NASTY = 'Quote " and \' and """ and \\ back\\slash\nnew line {{ 7*7 }} {% if %} {# c #} # hash $HOME `x` é 漢字 ✓'
INJECTIONS = [
    '"""); open("MARKER", "w")#',
    "'''); open('MARKER', 'w')#",
    '\\"""); open("MARKER", "w")#',
    '"); import os; os.system("touch MARKER")#',
    "{{ self.__init__.__globals__.__builtins__.open('MARKER', 'w') }}",
    "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    '{% set x = cycler.__init__.__globals__.os.system("touch MARKER") %}',
    '"\n[project.scripts]\nx = "os:system"\n# ',
    "$(touch MARKER) `touch MARKER`",
]


def tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def everything_under(root: Path) -> set[str]:
    return {str(path) for path in root.rglob("*")}


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    """Run in ``tmp_path`` (so a relative MARKER would land there), output to ``tmp_path/out``."""
    old = Path.cwd()
    os.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    try:
        yield tmp_path
    finally:
        os.chdir(old)


BAD_PACKAGE_NAMES = ["../x", "../../escaped", "a/b", "a/../b", "..", ".", "", "x/", "My-Pkg", "1abc", "class", "grain"]


@pytest.mark.parametrize("name", BAD_PACKAGE_NAMES)
def test_a_bad_package_name_leaves_nothing_anywhere(in_tmp: Path, name: str, capfd: pytest.CaptureFixture[str]) -> None:
    parent_before = everything_under(in_tmp.parent)
    with pytest.raises(FailedHookException):
        bake(in_tmp / "out", package_name=name)
    err = capfd.readouterr().err
    assert f"ERROR: package_name {name!r}" in err or "ERROR: package_name is empty" in err, err
    assert everything_under(in_tmp / "out") == set()
    assert everything_under(in_tmp.parent) == parent_before


def test_an_absolute_package_name_writes_nothing_there(in_tmp: Path, capfd: pytest.CaptureFixture[str]) -> None:
    target = in_tmp / "abs" / "pkg"
    with pytest.raises(FailedHookException):
        bake(in_tmp / "out", package_name=str(target))
    assert "is a path, not a name" in capfd.readouterr().err
    assert not (in_tmp / "abs").exists()
    assert everything_under(in_tmp / "out") == set()


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"capacity": "0"}, "capacity '0' is not a whole number"),
        ({"capacity": "many"}, "capacity 'many'"),
        ({"author_email": "me"}, "author_email 'me' is not an email address"),
        ({"version": "one"}, "version 'one' is not a PEP 440 version"),
        ({"package_name": "café"}, "'cafe'"),
        ({"package_name": "grain"}, "package_name 'grain' would shadow"),
        ({"version": "1.0.0-alpha.beta"}, "version '1.0.0-alpha.beta' is not a PEP 440 version"),
        ({"repository_url": "github.com/me/x"}, "repository_url 'github.com/me/x' is not a web address"),
        ({"description": "a\x1bb"}, "control character"),
    ],
)
def test_bad_answers_stop_the_bake_with_one_readable_line(
    in_tmp: Path, answers: dict[str, str], expected: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FailedHookException):
        bake(in_tmp / "out", **answers)
    err_lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR: ")]
    assert len(err_lines) == 1 and expected in err_lines[0], err_lines
    assert everything_under(in_tmp / "out") == set()


@pytest.mark.parametrize(
    ("project_name", "package_name"),
    [('Quote " and back\\slash', "quote_and_back_slash"), ("My {{ x }}", "my_x")],  # the rest: test_hooks.py
)
def test_any_project_name_with_a_letter_derives_a_package_name_that_bakes(
    tmp_path: Path, project_name: str, package_name: str
) -> None:
    project = bake(tmp_path, project_name=project_name)
    assert project.name == package_name
    assert (project / package_name / "the_sworker.py").is_file()
    assert json.loads((project / ".template-answers.json").read_text())["project_name"] == project_name


# More spellings: test_hooks.py checks the normalization against packaging, and every way of answering bakes 2.1.0-RC1.
@pytest.mark.parametrize(("version", "normalized"), [("1.0-beta", "1.0b0")])
def test_a_version_packaging_accepts_is_written_normalized_everywhere(
    tmp_path: Path, version: str, normalized: str
) -> None:
    from packaging.version import Version

    assert str(Version(version)) == normalized
    project = bake(tmp_path, version=version, package_name="ver_pkg")
    assert tomllib.loads((project / "pyproject.toml").read_text())["project"]["version"] == normalized
    assert f'__version__ = "{normalized}"' in (project / "ver_pkg" / "__init__.py").read_text()
    assert f"## [{normalized}]" in (project / "CHANGELOG.md").read_text()
    recorded = json.loads((project / ".template-answers.json").read_text())
    assert recorded["version"] == version  # the answer as given, to render the same package again
    for name, content in tree(project).items():
        if name != ".template-answers.json":
            assert version.encode() not in content or version == normalized, name


def test_the_command_line_prints_the_reason_and_fails(in_tmp: Path) -> None:
    result = run(["cookiecutter", "--no-input", "-o", "out", str(TEMPLATE), "package_name=Foo-Bar"], in_tmp)
    assert result.returncode != 0
    assert "ERROR: package_name 'Foo-Bar' is not a lower-case Python identifier" in result.stderr
    assert "'foo_bar'" in result.stderr
    assert everything_under(in_tmp / "out") == set()


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        ("backendless=maybe", "could not be converted to a boolean"),
        ("license=GPL", "provided for choice variable"),
        ("protocol=grpc", "provided for choice variable"),
    ],
)
def test_answers_cookiecutter_itself_refuses_before_hooks_leave_nothing(
    in_tmp: Path, answer: str, complaint: str
) -> None:
    # Documented in the template README: cookiecutter 2.7.1 checks booleans and choices
    # before any hook runs, with a traceback that no hook can replace.
    result = run(["cookiecutter", "--no-input", "-o", "out", str(TEMPLATE), answer], in_tmp)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr
    assert everything_under(in_tmp / "out") == set()


def check_nasty_bake(project: Path, answers: dict[str, Any]) -> None:
    package = project / answers["package_name"]
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert meta["description"] == answers["description"]
    assert meta["authors"] == [{"name": answers["author_name"], "email": answers["author_email"]}]
    docstring = compile((package / "__init__.py").read_text(), "__init__.py", "exec").co_consts[0]
    assert docstring == answers["description"]
    readme = (project / "README.md").read_text()
    assert " ".join(answers["project_name"].split()) in readme
    assert " ".join(answers["description"].split()) in readme
    tomllib.loads((project / "grain.toml").read_text())
    for path in project.rglob("*.py"):
        py_compile.compile(str(path), doraise=True)


@pytest.mark.parametrize("variant", ["server", "backendless"])
def test_free_text_renders_safely_and_the_fast_generated_checks_pass(in_tmp: Path, variant: str) -> None:
    answers = {
        **replay_answers(variant),
        "project_name": NASTY,
        "description": NASTY,
        "author_name": NASTY.replace("\n", " "),
    }
    project = bake(in_tmp / "out", **answers)
    check_nasty_bake(project, answers)
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        result = run(command, project)
        assert result.returncode == 0, result.stdout + result.stderr
    result = run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sworker_conformance"], project)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_no_answer_runs_code(in_tmp: Path, payload: str) -> None:
    answers = {"project_name": payload, "package_name": "inj", "description": payload, "author_name": payload}
    project = bake(in_tmp / "out", **answers)
    assert not list(in_tmp.rglob("MARKER"))
    assert not (TEMPLATE / "MARKER").exists()
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert meta["description"] == payload
    assert "scripts" not in meta
    docstring = compile((project / "inj" / "__init__.py").read_text(), "__init__.py", "exec").co_consts[0]
    assert docstring == payload


ANSWERS_FOR_MODES = {
    "backendless": True,
    "project_name": 'Mode {{ x }} "q" é',
    "package_name": "mode_pkg",
    "description": "Line one\nline {% two %} \\ three",
    "author_name": "Ann O'Neil",
    "author_email": "ann@example.org",
    "repository_url": "https://gitlab.com/ann/mode-pkg",
    "version": "2.1.0-RC1",
    "license": "BSD-3-Clause",
    "capacity": "7",
    "service_url_env": "MODE_URL",
    "api_token_env": "MODE_TOKEN",
}


def bake_in_mode(mode: str, where: Path, answers: dict[str, Any]) -> Path:
    """Bake ``answers`` by ``--no-input`` extra context, the CLI, ``--replay`` or a config file."""
    out = where / "out"
    out.mkdir(parents=True)
    if mode == "extra_context":
        return Path(
            cookiecutter(str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(out), default_config=True)
        )
    if mode == "replay":
        # Replay what an earlier bake recorded (cookiecutter records before any hook runs).
        config = where / "config.yaml"
        config.write_text(json.dumps({"replay_dir": str(where / "replay"), "cookiecutters_dir": str(where / "cc")}))
        try:
            cookiecutter(
                str(TEMPLATE),
                no_input=True,
                extra_context=answers,
                output_dir=str(where / "earlier"),
                config_file=str(config),
            )
        except FailedHookException:
            pass
        (replay,) = (where / "replay").glob("*.json")
        return Path(cookiecutter(str(TEMPLATE), replay=str(replay), output_dir=str(out), config_file=str(config)))
    if mode == "config_file":
        config = where / "config.yaml"  # JSON is YAML
        config.write_text(
            json.dumps(
                {
                    "default_context": {k: str(v) if isinstance(v, bool) else v for k, v in answers.items()},
                    "replay_dir": str(where / "replay"),
                    "cookiecutters_dir": str(where / "cc"),
                }
            )
        )
        return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(out), config_file=str(config)))
    if mode == "cli":
        args = [f"{k}={'yes' if v is True else 'no' if v is False else v}" for k, v in answers.items()]
        result = run(["cookiecutter", "--no-input", "--default-config", "-o", str(out), str(TEMPLATE), *args], where)
        if result.returncode:
            raise FailedHookException(result.stderr)
        return out / answers["package_name"]
    raise AssertionError(mode)


MODES = ["extra_context", "replay", "config_file", "cli"]


def test_every_way_of_answering_gives_the_same_package(tmp_path: Path) -> None:
    trees = {mode: tree(bake_in_mode(mode, tmp_path / mode, ANSWERS_FOR_MODES)) for mode in MODES}
    reference = trees.pop("extra_context")
    for mode, other in trees.items():
        assert other == reference, mode
    meta = tomllib.loads(reference["pyproject.toml"].decode())["project"]
    assert meta["description"] == ANSWERS_FOR_MODES["description"]
    assert meta["version"] == "2.1.0rc1"
    assert meta["urls"]["Issues"] == "https://gitlab.com/ann/mode-pkg/-/issues"


@pytest.mark.parametrize("mode", MODES)
def test_every_way_of_answering_rejects_the_same_way(
    tmp_path: Path, mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FailedHookException) as caught:
        bake_in_mode(mode, tmp_path, {**ANSWERS_FOR_MODES, "capacity": "0"})
    err = capfd.readouterr().err + str(caught.value)
    assert "ERROR: capacity '0' is not a whole number from 1 to" in err
    assert everything_under(tmp_path / "out") == set()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("backendless", "maybe", "backendless 'maybe' is not yes or no"),
        ("license", "GPL", "license 'GPL' is not one of"),
        ("protocol", "grpc", "protocol 'grpc' is not one of"),
    ],
)
def test_a_replay_file_with_answers_cookiecutter_does_not_check_is_rejected_by_the_hook(
    tmp_path: Path, key: str, value: str, expected: str, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"replay_dir": str(tmp_path / "replay"), "cookiecutters_dir": str(tmp_path / "cc")}))
    earlier = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        extra_context=ANSWERS_FOR_MODES,
        output_dir=str(tmp_path / "e"),
        config_file=str(config),
    )
    assert Path(earlier).is_dir()
    (recorded,) = (tmp_path / "replay").glob("*.json")
    context = json.loads(recorded.read_text())
    context["cookiecutter"][key] = value
    replay = tmp_path / "edited.json"
    replay.write_text(json.dumps(context))
    (tmp_path / "out").mkdir()
    with pytest.raises(FailedHookException):
        cookiecutter(str(TEMPLATE), replay=str(replay), output_dir=str(tmp_path / "out"), config_file=str(config))
    assert expected in capfd.readouterr().err
    assert everything_under(tmp_path / "out") == set()


def test_typed_answers_give_the_same_package_as_no_input(tmp_path: Path) -> None:
    """Answers typed at the prompts (piped in, in cookiecutter.json's order) equal the --no-input bake."""
    answers = {**ANSWERS_FOR_MODES, "description": "One line {% two %} \\ three"}  # a prompt takes one line
    questions = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    lines = []
    for key, default in questions.items():
        if key.startswith("_"):
            continue
        if key not in answers:
            lines.append("")  # accept the default (e.g. a year)
        elif isinstance(default, bool):
            lines.append("yes" if answers[key] else "no")
        elif isinstance(default, list):
            lines.append(str(default.index(answers[key]) + 1))
        else:
            lines.append(str(answers[key]))
    (tmp_path / "typed").mkdir()
    result = subprocess.run(
        ["cookiecutter", "--default-config", "-o", str(tmp_path / "typed"), str(TEMPLATE)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    typed = tree(tmp_path / "typed" / answers["package_name"])
    reference = tree(bake_in_mode("extra_context", tmp_path / "no_input", answers))
    assert typed == reference


# -- the oldest cookiecutter the template is tested with -------------------------------------------


@pytest.fixture(scope="session")
def oldest_cookiecutter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``cookiecutter`` command of a new venv holding the oldest tested release, from PyPI.

    The newest tested release is the one requirements-dev.txt installs, which every other test uses.
    """
    oldest = load_extensions().TESTED_COOKIECUTTER[0]
    venv = tmp_path_factory.mktemp(f"cookiecutter-{oldest}")
    result = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], venv)
    assert result.returncode == 0, result.stderr
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet"]
    result = run([*install, "--disable-pip-version-check", f"cookiecutter=={oldest}"], venv, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return venv / "bin" / "cookiecutter"


@pytest.mark.parametrize("variant", ["server", "backendless"])
def test_the_oldest_tested_cookiecutter_bakes_the_same_package(
    oldest_cookiecutter: Path, tmp_path: Path, variant: str
) -> None:
    """Answers from a config file (typed YAML: booleans stay booleans) give the newest's package."""
    answers = {
        **replay_answers(variant),
        "project_name": 'Old {{ x }} "q" é',
        "description": "Keep {{ 7*7 }} and {% raw %} as typed",
        "version": "1.0-beta",
        "repository_url": "https://github.com/me/old",
    }
    config = tmp_path / "config.yaml"  # JSON is YAML
    config.write_text(json.dumps({"default_context": answers, "replay_dir": str(tmp_path / "replay")}))
    (tmp_path / "old").mkdir()
    command = [str(oldest_cookiecutter), "--no-input", "--config-file", str(config), "-o", "old", str(TEMPLATE)]
    result = run(command, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("Created the") == 1
    old = tree(tmp_path / "old" / answers["package_name"])
    assert old == tree(bake_in_mode("extra_context", tmp_path / "newest", answers))
    assert tomllib.loads(old["pyproject.toml"].decode())["project"]["description"] == answers["description"]


def test_the_oldest_tested_cookiecutter_refuses_in_one_line_and_leaves_nothing(
    oldest_cookiecutter: Path, tmp_path: Path
) -> None:
    """A yes/no on its command line arrives as text (told so), and a path as package name stays inside."""
    (tmp_path / "out").mkdir()
    command = [str(oldest_cookiecutter), "--no-input", "--default-config", "-o", "out", str(TEMPLATE)]
    for answer, expected in (
        ("backendless=yes", ("ERROR: backendless 'yes' reached the template as text", "'cookiecutter>=2.7'")),
        ("package_name=../escaped", ("ERROR: package_name '../escaped' is a path, not a name",)),
    ):
        before = everything_under(tmp_path.parent)
        result = run([*command, answer], tmp_path)
        assert result.returncode != 0
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
        assert all(part in line for part in expected), line
        assert everything_under(tmp_path.parent) == before, answer
