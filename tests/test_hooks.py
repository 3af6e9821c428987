"""The hooks as modules: rendered the way cookiecutter renders them, then imported and called."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import TEMPLATE, replay_answers
from cookiecutter.environment import StrictEnvironment

HOOKS = TEMPLATE / "hooks"


def render_hook(name: str, answers: dict[str, Any], tmp_path: Path) -> ModuleType:
    """Render ``hooks/<name>.py`` with cookiecutter's own environment and import the result."""
    context = {"cookiecutter": {**answers, "_extensions": ["local_extensions.TextFilters"]}}
    sys.path.insert(0, str(TEMPLATE))
    try:
        env = StrictEnvironment(context=context, keep_trailing_newline=True)
        source = env.from_string((HOOKS / f"{name}.py").read_text()).render(**context)
    finally:
        sys.path.remove(str(TEMPLATE))
    path = tmp_path / f"{name}_rendered.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"{name}_rendered_{id(path)}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def pre_gen(tmp_path: Path) -> ModuleType:
    return render_hook("pre_gen_project", replay_answers("server"), tmp_path)


def test_answers_arrive_as_data_whatever_they_hold(tmp_path: Path) -> None:
    nasty = 'a """ \' \\ \n {{ x }} {% if %} # $HOME é \u2028 """); open("MARKER", "w")#'
    answers = {**replay_answers("server"), "description": nasty, "author_name": nasty}
    module = render_hook("pre_gen_project", answers, tmp_path)
    assert module.ANSWERS["description"] == nasty
    assert module.ANSWERS["author_name"] == nasty
    assert not list(tmp_path.glob("MARKER"))
    assert not Path("MARKER").exists()
    assert module.main() == 0


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("package_name", "", "package_name is empty"),
        ("package_name", "class", "is a Python keyword"),
        ("package_name", "match", "is a Python keyword"),
        ("package_name", "1abc", "no leading digit"),
        ("package_name", "my-pkg", "'my_pkg'"),
        ("package_name", "my.pkg", "'my_pkg'"),
        ("package_name", "MyPkg", "'mypkg'"),
        ("package_name", "a" * 51, "longer than 50"),
        ("package_name", "../x", "is a path"),
        ("package_name", "/abs", "is a path"),
        ("package_name", "a/b", "is a path"),
        ("package_name", "a\\b", "is a path"),
        ("package_name", "café", "'cafe'"),
        ("package_name", "grain", "would shadow"),
        ("package_name", "trio", "would shadow"),
        ("package_name", "anyio", "would shadow"),
        ("package_name", "msgpack", "would shadow"),
        ("package_name", "json", "would shadow"),
        ("package_name", "test", "would shadow"),
        ("package_name", "collections", "would shadow"),
        ("capacity", "0", "capacity '0'"),
        ("capacity", "-2", "capacity '-2'"),
        ("capacity", "2.5", "capacity '2.5'"),
        ("capacity", "four", "capacity 'four'"),
        ("capacity", "", "capacity ''"),
        ("author_email", "nobody", "not an email"),
        ("author_email", "a@b", "not an email"),
        ("version", "1.0-beta", "not a PEP 440"),
        ("version", "v1", "not a PEP 440"),
        ("license", "GPL", "is not one of MIT"),
        ("backendless", "maybe", "is not yes or no"),
        ("project_name", " ", "project_name is empty"),
        ("description", "bell\x07", "control character"),
        ("author_name", "nul\x00", "control character"),
        ("service_url_env", "my-url", "not an environment variable name"),
        ("api_token_env", "1TOKEN", "not an environment variable name"),
    ],
)
def test_each_bad_answer_is_rejected_in_one_line_that_says_what_to_type(
    pre_gen: ModuleType, key: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = {**replay_answers("server"), key: value}
    with pytest.raises(pre_gen.Rejected) as caught:
        pre_gen.validate(answers)
    message = str(caught.value)
    assert expected in message, message
    assert key in message
    assert "\n" not in message
    assert "type" in message or "remove" in message or "give them" in message
    pre_gen.ANSWERS = answers
    assert pre_gen.main() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ERROR: ") and key in err


def test_valid_answers_pass(pre_gen: ModuleType) -> None:
    for variant in ("server", "backendless"):
        pre_gen.validate(replay_answers(variant))
    for name in ("x", "my_sworker", "terachem2", "_private", "a" * 50):
        pre_gen.check_package_name(name)
    for version in ("0.1.0", "1!2.0", "1.0rc1", "2.0.post1.dev3"):
        pre_gen.check_version(version)


def test_suggestions_are_themselves_valid(pre_gen: ModuleType) -> None:
    for bad in ("My Cool-Sworker v2.0", "../x", "/abs", "1abc", "grain", "class", "", "ÄÖÜ", "a" * 80, "--"):
        suggestion = pre_gen.suggest_identifier(bad)
        pre_gen.check_package_name(suggestion)


def test_the_same_variable_for_url_and_token_is_rejected(pre_gen: ModuleType) -> None:
    answers = {**replay_answers("backendless"), "api_token_env": "CLOUD_CALC_URL"}
    with pytest.raises(pre_gen.Rejected, match="same variable"):
        pre_gen.validate(answers)


def test_post_gen_is_idempotent_and_keeps_only_the_variant(tmp_path: Path) -> None:
    answers = replay_answers("backendless")
    (tmp_path / "hooks").mkdir()
    module = render_hook("post_gen_project", answers, tmp_path / "hooks")
    project = tmp_path / "project"
    package = project / answers["package_name"]
    package.mkdir(parents=True)
    for files in module.VARIANT_FILES.values():
        for source in files:
            path = project / source.replace("PKG", answers["package_name"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
    module.apply_variant(project, answers["package_name"], "backendless")
    first = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    module.apply_variant(project, answers["package_name"], "backendless")
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == first
    assert not [name for name in first if ".server." in name or ".backendless." in name]
    assert (package / "the_sworker.py").read_text() == "PKG/the_sworker.backendless.py"
    assert module.variant_of(answers) == "backendless"
    assert json.loads(json.dumps(module.ANSWERS)) == module.ANSWERS


def test_local_extensions_keep_answers_literal_and_folder_names_path_free() -> None:
    sys.path.insert(0, str(TEMPLATE))
    try:
        import local_extensions as ext
    finally:
        sys.path.remove(str(TEMPLATE))
    from jinja2 import Environment

    env = Environment(keep_trailing_newline=True)
    for text in ["{{ 7*7 }}", "{% if %}", "{# c", "a'b\"c\\d", "é 漢字 \u2028 \x00 \t\n\r", "'}}", "{% endraw %}"]:
        assert env.from_string(ext.jinja_literal(text)).render() == text
    for bad in ["../x", "/abs", "a/b", "a\\b", ".", "..", "", "nul\x00"]:
        part = ext.path_part(bad)
        assert "/" not in part and "\\" not in part and "\x00" not in part and part not in ("", ".", "..")
    assert ext.path_part("good_name") == "good_name"
    assert "{{ cookiecutter.project_name" in " ".join(ext._template_defaults())
