"""The hooks as modules: rendered the way cookiecutter renders them, then imported and called."""

from __future__ import annotations

import importlib.util
import json
import keyword
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import TEMPLATE, git, load_extensions, replay_answers, run
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
        ("version", "one", "not a PEP 440"),
        ("version", "1.0.0-alpha.beta", "not a PEP 440"),
        ("version", "1..0", "not a PEP 440"),
        ("repository_url", "github.com/you/project", "is not a web address"),
        ("repository_url", "https://exa mple.com/x", "is not a web address"),
        ("repository_url", "ftp://example.com/x", "is not a web address"),
        ("license", "GPL", "is not one of MIT"),
        ("protocol", "grpc", "is not one of json-lines, http"),
        ("backendless", "maybe", "is not yes or no"),
        ("backendless", "yes", "reached the template as text"),
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
    for variant in ("server", "server-http", "backendless"):
        pre_gen.validate(replay_answers(variant))
    for name in ("x", "my_sworker", "terachem2", "_private", "a" * 50):
        pre_gen.check_package_name(name)
    for version in ("0.1.0", "1!2.0", "1.0rc1", "2.0.post1.dev3", "1.0-beta", "v1.0", "1.0.0-RC1", " 1.0 "):
        pre_gen.check_version(version)
    for url in ("", "https://github.com/you/project", "http://git.example.org:8080/a/b.git/"):
        pre_gen.check_repository_url(url)


PROJECT_NAMES = [
    'Quote " and back\\slash',
    "My Cool-Sworker v2.0",
    "My {{ x }}",
    "../x",
    "/abs",
    "1abc",
    "2",
    "Grain",
    "class",
    "match",
    "Collections",
    "__init__",
    "",
    "ÄÖÜ",
    "漢字",
    "a" * 80,
    "x" * 49 + " y",
    "--",
    "_",
]


def test_the_derived_package_name_is_always_valid(pre_gen: ModuleType) -> None:
    """cookiecutter.json's default and the hook's suggestion are one function, whose names the hook accepts."""
    rules = pre_gen.RULES
    default = json.loads((TEMPLATE / "cookiecutter.json").read_text())["package_name"]
    assert default == "{{ cookiecutter.project_name | package_slug }}"
    names = [
        *PROJECT_NAMES,
        *sorted(rules.SHADOWED),
        *keyword.kwlist,
        *keyword.softkwlist,
        *sorted(sys.stdlib_module_names),
    ]
    for project_name in names:
        pre_gen.check_package_name(rules.package_slug(project_name))
    assert rules.package_slug('Quote " and back\\slash') == "quote_and_back_slash"
    assert rules.package_slug("Cool Sworker") == "cool_sworker"
    assert rules.package_slug("café") == "cafe"
    assert rules.package_slug("Grain") == "grain_sworker"
    with pytest.raises(pre_gen.Rejected, match="such as 'my_pkg'"):  # the hook suggests what the default derives
        pre_gen.check_package_name("My-Pkg")


#: Versions packaging accepts, in the spellings PEP 440 allows, and some it refuses.
VERSIONS = [
    "0.1.0", "1.0-beta", "v1.0", "V1.0", "1.0.0-RC1", "1!2.0", "0!1.0", "1.0a", "1.0.alpha.2", "1.0_b_3", "1.0c1",
    "1.0pre", "1.0-preview4", "1.0rc", "1.0-1", "1.0.post", "1.0-r2", "1.0rev3", "1.0_post_4", "1.0dev", "1.0.dev",
    "1.0-dev7", "1.0a1.post2.dev3", "1.0+Ubuntu-01", "1.0+abc.5_DEF", " 1.0\n", "\u00a01.0", "01.002.0003", "1.0RC1",
    "1.0.0-alpha.beta", "1..0", "1.0-", "v", "", "one", "1.0+", "1.0+a..b", "1.0 beta", "1.0-beta-", "1.0.post-1",
    "\u0661.0", "1.0-\u0131", "1.0.dev1.dev2", "1.0b1a1", "- 1.0", "1.0+ü",
]  # fmt: skip


def generated_versions() -> list[str]:
    """Every combination of PEP 440's parts, spelled several ways."""
    parts = {
        "epoch": ["", "2!"],
        "release": ["1", "1.02.0"],
        "pre": ["", "a1", "-BETA", ".c.2", "_preview_0"],
        "post": ["", ".post1", "-3", "rev", "-r_5"],
        "dev": ["", ".dev", "-DEV9"],
        "local": ["", "+Local-7.x"],
    }
    versions = [""]
    for options in parts.values():
        versions = [version + option for version in versions for option in options]
    return versions


def test_pep440_normalizes_as_packaging_does(pre_gen: ModuleType) -> None:
    from packaging.version import InvalidVersion, Version

    for text in [*VERSIONS, *generated_versions()]:
        try:
            expected = str(Version(text))
        except InvalidVersion:
            with pytest.raises(ValueError):
                pre_gen.RULES.pep440(text)
            with pytest.raises(pre_gen.Rejected):
                pre_gen.check_version(text)
        else:
            assert pre_gen.RULES.pep440(text) == expected, text
            pre_gen.check_version(text)


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
    assert not [name for name in first if any(f".{v}." in name for v in ("server", "backendless", "jsonlines", "http"))]
    assert (package / "the_sworker.py").read_text() == "PKG/the_sworker.backendless.py"
    assert module.variant_of(answers) == "backendless"
    assert module.variant_of({**answers, "backendless": False, "protocol": "http"}) == "server-http"
    assert module.variant_of({"backendless": False}) == "server-json-lines"  # a project baked before the question
    assert json.loads(json.dumps(module.ANSWERS)) == module.ANSWERS


def test_local_extensions_keep_answers_literal_and_folder_names_path_free() -> None:
    ext = load_extensions()
    from jinja2 import Environment

    env = Environment(keep_trailing_newline=True)
    for text in ["{{ 7*7 }}", "{% if %}", "{# c", "a'b\"c\\d", "é 漢字 \u2028 \x00 \t\n\r", "'}}", "{% endraw %}"]:
        assert env.from_string(ext.jinja_literal(text)).render() == text
    for bad in ["../x", "/abs", "a/b", "a\\b", ".", "..", "", "nul\x00"]:
        part = ext.path_part(bad)
        assert "/" not in part and "\\" not in part and "\x00" not in part and part not in ("", ".", "..")
    assert ext.path_part("good_name") == "good_name"
    assert "{{ cookiecutter.project_name" in " ".join(ext._template_defaults())


# -- the answers guard checks cookiecutter ------------------------------------------------------

#: Run cookiecutter's command line after changing what the guard relies on.
BREAK_COOKIECUTTER = {
    "renamed": (
        "import cookiecutter.prompt as p; f = p.render_variable; "
        "p.render_variable = type(f)(f.__code__.replace(co_name='render_value'), f.__globals__, 'render_value')"
    ),
    "gone": "import cookiecutter.prompt as p; del p.render_variable",
    "reshaped": (
        "import cookiecutter.prompt as p; f = p.render_variable; p.render_variable = lambda env, raw: f(env, raw, {})"
    ),
}


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("renamed", "the probe answer '{{ 6*7 }}' was rendered as Jinja, to '42'"),
        ("gone", "cookiecutter.prompt.render_variable is gone"),
        ("reshaped", "takes ['env', 'raw'], not (env, raw, cookiecutter_dict)"),
    ],
)
def test_the_bake_stops_with_one_line_when_the_guard_cannot_work(tmp_path: Path, breakage: str, reason: str) -> None:
    script = f"{BREAK_COOKIECUTTER[breakage]}\nfrom cookiecutter.cli import main\nmain()"
    command = [sys.executable, "-c", script, "--no-input", "-o", str(tmp_path / "out"), str(TEMPLATE)]
    result = run([*command, "description={{ 7*7 }}"], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("ERROR: this template cannot keep answers as data with cookiecutter "), lines
    assert reason in lines[0] and "python -m pip install 'cookiecutter>=2.2.0,<=2.7.1'" in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_the_guard_accepts_this_cookiecutter_and_names_the_tested_versions() -> None:
    from importlib.metadata import version

    ext = load_extensions()
    ext._check_render_variable()  # raises GuardUnavailable if this cookiecutter is not what it relies on
    assert version("cookiecutter") == ext.TESTED_COOKIECUTTER[-1]  # requirements-dev.txt pins the newest tested
    readme = (TEMPLATE / "README.md").read_text()
    for tested in ext.TESTED_COOKIECUTTER:
        assert f"cookiecutter {tested}" in readme, tested


# -- where the template came from ------------------------------------------------------------------


def test_the_checked_out_commit_is_read_from_git_files(tmp_path: Path) -> None:
    ext = load_extensions()
    repo = tmp_path / "repo"
    repo.mkdir()
    assert ext.checked_out_commit(repo) is None  # not a git work tree
    git(["init", "-q", "-b", "main"], repo)
    assert ext.checked_out_commit(repo) is None  # no commit yet
    for message in ("one", "two"):
        (repo / "f").write_text(message)
        git(["add", "f"], repo)
        git(["commit", "-q", "-m", message], repo)
    head = git(["rev-parse", "HEAD"], repo)
    assert ext.checked_out_commit(repo) == head  # a loose ref
    git(["pack-refs", "--all"], repo)
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert ext.checked_out_commit(repo) == head  # a packed ref
    first = git(["rev-parse", "HEAD~1"], repo)
    git(["worktree", "add", "-q", "--detach", str(tmp_path / "detached"), first], repo)
    assert ext.checked_out_commit(tmp_path / "detached") == first  # a worktree, detached
    git(["worktree", "add", "-q", "-b", "other", str(tmp_path / "branch"), "main"], repo)
    assert ext.checked_out_commit(tmp_path / "branch") == head  # a worktree on a branch


def test_the_origin_records_urls_and_commits_never_local_paths(tmp_path: Path) -> None:
    ext = load_extensions()
    commit = "a" * 40
    assert ext.template_origin({"_template": "gh:org/tmpl", "_commit": commit}) == {
        "_template": "https://github.com/org/tmpl.git",
        "_commit": commit,
    }
    assert ext.template_origin({"_template": "https://user:t0ken@example.org/org/tmpl.git"})["_template"] == (
        "https://example.org/org/tmpl.git"
    )
    assert (
        ext.template_origin({"_template": "git@github.com:org/tmpl.git"})["_template"] == "git@github.com:org/tmpl.git"
    )
    for local in ("../tmpl", str(tmp_path), "~/tmpl", "tmpl.zip", "file:///tmp/tmpl"):
        assert "_template" not in ext.template_origin({"_template": local, "_repo_dir": str(tmp_path)}), local


def test_project_urls_link_what_the_host_has() -> None:
    ext = load_extensions()
    assert ext.project_urls("") == {}
    assert ext.project_urls("https://gitlab.com/me/x.git/") == {
        "Repository": "https://gitlab.com/me/x",
        "Issues": "https://gitlab.com/me/x/-/issues",
        "Changelog": "https://gitlab.com/me/x/-/blob/main/CHANGELOG.md",
    }
    assert ext.project_urls("http://git.example.org:8080/me/x/") == {"Repository": "http://git.example.org:8080/me/x"}
    for bad in ("git.example.org/me/x", "https://exa mple.org", 'https://x.org/"q"', "ssh://git@x.org/me/x"):
        with pytest.raises(ValueError):
            ext.project_urls(bad)


def test_post_gen_is_quiet_only_in_a_throwaway_render(tmp_path: Path) -> None:
    import tempfile

    module = render_hook("post_gen_project", replay_answers("server"), tmp_path)
    with tempfile.TemporaryDirectory() as throwaway:  # where cruft renders for update and diff
        project = Path(throwaway) / "echo_lab"
        project.mkdir()
        assert module.is_throwaway_render(project, {"package_name": "echo_lab"})
        assert not module.is_throwaway_render(project, {"package_name": "echo_lab", "_output_dir": throwaway})
    assert not module.is_throwaway_render(tmp_path / "echo_lab", {"package_name": "echo_lab"})
