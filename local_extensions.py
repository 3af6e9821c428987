"""Jinja filters that turn free-text answers into safe literals, and the rules answers follow.

Answers such as a description may hold quotes, backslashes, newlines or ``{{``:
rendered through these filters they stay data in every generated file.

This module is also the one home of the rules that both a default in
``cookiecutter.json`` and ``hooks/pre_gen_project.py`` need: the package name
derived from a project name (``package_slug``), the modules a package must not
shadow, and PEP 440 version normalization (``pep440``). The hooks run as
separate scripts, so they load this file by path (``this_template``); it
needs nothing beyond the standard library and Jinja, both present wherever
cookiecutter runs.

Two guards act on the templates cookiecutter builds from strings (``from_string``):

- **Answers are data, never templates.** With ``--no-input``, cookiecutter
  renders every extra-context and config-file answer as a Jinja template
  (``{{ 7*7 }}`` became ``49``, a lone ``{%`` crashed it, and Jinja expressions
  can reach Python objects). Here an answer that is not one of the template's
  own defaults in ``cookiecutter.json`` is turned into a literal before Jinja
  parses it, so ``--no-input``, prompts, ``--replay`` and config files all
  give the same answers. This relies on a private function of cookiecutter's,
  ``cookiecutter.prompt.render_variable``, so loading the extension checks
  that it still works that way and stops the bake with one line if not.
- **The project folder's name is never a path.** Cookiecutter creates the
  folder named by ``package_name`` *before* ``pre_gen_project`` can reject it;
  ``../x`` or ``/abs`` would create it outside the output folder and ``a/b``
  would leave ``a/`` behind. The folder's name is made path-free here, so the
  rejected bake's folder lands inside the output folder and is removed.
"""

from __future__ import annotations

import functools
import inspect
import json
import keyword
import re
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jinja2 import Environment
from jinja2.ext import Extension

#: The cookiecutter releases this template is tested with, oldest and newest: 2.2.0 is the first
#: with boolean questions and ``__prompts__``.
TESTED_COOKIECUTTER = ("2.2.0", "2.7.1")

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_PACKAGE_FOLDER = "{{cookiecutter.package_name}}"
_JINJA_OPENERS = ("{{", "{%", "{#")
#: How far up the stack ``from_string`` may sit below cookiecutter's ``render_variable``.
_MAX_FRAMES = 30
_MAX_FOLDER_NAME = 100
_TEMPLATE_FOLDER = Path(__file__).resolve().parent

# -- package names -------------------------------------------------------------------------------

MAX_PACKAGE_NAME = 50
#: Modules the generated package imports, or that a test run imports: a package
#: with one of these names would shadow it.
SHADOWED = frozenset(
    """
    grain trio anyio msgpack httpx psutil pytest json test tests asyncio socket signal os sys time typing
    secrets subprocess tempfile argparse dataclasses contextlib collections pathlib importlib logging http
    urllib email string types abc io re hmac shlex attr attrs cattr cattrs dill click outcome sniffio idna
    certifi httpcore h11 exceptiongroup sortedcontainers sworker_conformance conftest setuptools hatchling
    pip site builtins __future__ packaging
    """.split()
)


def is_keyword(name: str) -> bool:
    return keyword.iskeyword(name) or keyword.issoftkeyword(name)


def shadows_a_module(name: str) -> bool:
    return name in SHADOWED or name in getattr(sys, "stdlib_module_names", ())


def package_slug(value: Any) -> str:
    """The package name derived from ``value``: always a valid lower-case identifier.

    ``Cool Sworker`` -> ``cool_sworker``, ``café`` -> ``cafe``, ``2fast`` -> ``sworker_2fast``,
    ``Grain`` -> ``grain_sworker``; text with no ASCII letter or digit -> ``my_sworker``.
    """
    ascii_text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if not name:
        return "my_sworker"
    if name[0].isdigit():
        name = f"sworker_{name}"
    name = name[:MAX_PACKAGE_NAME].rstrip("_")
    if is_keyword(name) or shadows_a_module(name):
        name = f"{name}_sworker"
    return name


# -- versions ------------------------------------------------------------------------------------

#: PEP 440's canonical pattern, as ``packaging.version.VERSION_PATTERN`` publishes it (ASCII inside).
_VERSION_PATTERN = r"""
    v?
    (?a:
        (?:(?P<epoch>[0-9]+)!)?
        (?P<release>[0-9]+(?:\.[0-9]+)*)
        (?P<pre>[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
        (?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?
        (?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    )
    (?a:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
"""
_VERSION = re.compile(r"\s*" + _VERSION_PATTERN + r"\s*", re.VERBOSE | re.IGNORECASE)
_PRE_RELEASE = {"alpha": "a", "a": "a", "beta": "b", "b": "b", "c": "rc", "pre": "rc", "preview": "rc", "rc": "rc"}


def pep440(value: Any) -> str:
    """``value`` in PEP 440's normalized form (``1.0-beta`` -> ``1.0b0``, ``v1.0`` -> ``1.0``).

    What ``str(packaging.version.Version(value))`` gives, without needing ``packaging``
    (the hooks run in cookiecutter's interpreter, which may lack it). Raises ``ValueError``.
    """
    match = _VERSION.fullmatch(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a PEP 440 version")
    parts = []
    if match["epoch"] and int(match["epoch"]):
        parts.append(f"{int(match['epoch'])}!")
    parts.append(".".join(str(int(number)) for number in match["release"].split(".")))
    if match["pre"]:
        parts.append(f"{_PRE_RELEASE[match['pre_l'].lower()]}{int(match['pre_n'] or 0)}")
    if match["post"]:
        parts.append(f".post{int(match['post_n1'] or match['post_n2'] or 0)}")
    if match["dev"]:
        parts.append(f".dev{int(match['dev_n'] or 0)}")
    if match["local"]:
        segments = re.split(r"[-_.]", match["local"].lower())
        parts.append("+" + ".".join(str(int(s)) if s.isdigit() else s for s in segments))
    return "".join(parts)


# -- project URLs --------------------------------------------------------------------------------

_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[^\s\"'<>\\{}|^`]*)?")


def repository_url(value: Any) -> str:
    """The repository's web address as given, without a trailing ``/`` or ``.git``; ``""`` if none.

    Raises ``ValueError`` for anything but an empty answer or an http(s) address.
    """
    url = str(value).strip().removesuffix("/").removesuffix(".git").removesuffix("/")
    if url and not _URL.fullmatch(url):
        raise ValueError(f"{value!r} is not an http(s) address")
    return url


def project_urls(value: Any) -> dict[str, str]:
    """``[project.urls]`` for the repository at ``value``: nothing when there is none.

    Issues and the changelog are linked where the host's layout is known (GitHub, GitLab).
    """
    url = repository_url(value)
    if not url:
        return {}
    urls = {"Repository": url}
    host = urlsplit(url).hostname
    if host == "github.com":
        urls.update(Issues=f"{url}/issues", Changelog=f"{url}/blob/main/CHANGELOG.md")
    elif host == "gitlab.com":
        urls.update(Issues=f"{url}/-/issues", Changelog=f"{url}/-/blob/main/CHANGELOG.md")
    return urls


# -- recorded answers ----------------------------------------------------------------------------

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: A template cookiecutter clones (as its ``is_repo_url`` sees it), not a local folder or zip file.
_REMOTE = re.compile(r"((git|hg)\+)?(git|ssh|https?)://|[\w.-]+@[\w.-]+:")
#: cookiecutter's own abbreviations (``gh:owner/name``), as cruft needs a URL.
_ABBREVIATIONS = {
    "gh": "https://github.com/{0}.git",
    "gl": "https://gitlab.com/{0}.git",
    "bb": "https://bitbucket.org/{0}",
}


def _git_dir(folder: Path) -> Path | None:
    dot_git = folder / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():  # a worktree or a submodule: "gitdir: <path>"
        text = dot_git.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            return (folder / text.removeprefix("gitdir:").strip()).resolve()
    return None


def checked_out_commit(folder: Any) -> str | None:
    """The commit checked out in the git work tree ``folder``, read from ``.git`` (no git command)."""
    git_dir = _git_dir(Path(str(folder))) if folder else None
    if git_dir is None or not (git_dir / "HEAD").is_file():
        return None
    head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    if _COMMIT.fullmatch(head):
        return head  # detached, as after a checkout of a commit or tag
    ref = head.removeprefix("ref:").strip()
    common = git_dir
    if (git_dir / "commondir").is_file():
        common = (git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for base in (git_dir, common):
        if (base / ref).is_file():
            commit = (base / ref).read_text(encoding="utf-8").strip()
            return commit if _COMMIT.fullmatch(commit) else None
    if (common / "packed-refs").is_file():
        for line in (common / "packed-refs").read_text(encoding="utf-8").splitlines():
            commit, _, name = line.partition(" ")
            if name == ref and _COMMIT.fullmatch(commit):
                return commit
    return None


def _without_credentials(url: str) -> str:
    """``url`` without a user name or token (``https://user:token@host/...`` -> ``https://host/...``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def template_origin(context: Mapping[str, Any]) -> dict[str, str]:
    """Where this package's template came from, as far as this bake knows: what ``cruft link`` needs.

    ``_template``: the template's URL (never a path of this machine). ``_commit``: cruft's, or
    the commit checked out in the folder cookiecutter renders from, when that is a git clone
    (``_repo_dir``; cookiecutter may give it relative to a folder it has left since, and then
    this module's own folder is the template's).
    """
    origin = {}
    source = str(context.get("_template") or "")
    prefix, _, rest = source.partition(":")
    if prefix in _ABBREVIATIONS:
        origin["_template"] = _ABBREVIATIONS[prefix].format(rest)
    elif _REMOTE.match(source):
        origin["_template"] = _without_credentials(source)
    repo_dir = Path(str(context.get("_repo_dir") or ""))
    commit = context.get("_commit") or checked_out_commit(repo_dir if repo_dir.is_absolute() else _TEMPLATE_FOLDER)
    if commit:
        origin["_commit"] = str(commit)
    return origin


def recorded_answers(context: Mapping[str, Any]) -> dict[str, Any]:
    """The answers (no cookiecutter internals) and the template's origin, for ``.template-answers.json``."""
    answers = {key: value for key, value in context.items() if not key.startswith("_")}
    return {**answers, **template_origin(context)}


# -- Jinja filters -------------------------------------------------------------------------------


def py_str(value: Any) -> str:
    """A Python string literal holding ``value`` exactly, quoted as ``ruff format`` prefers."""
    literal = repr(str(value))
    if literal.startswith("'") and '"' not in literal:
        literal = '"' + literal[1:-1] + '"'
    return literal


def toml_str(value: Any) -> str:
    """A TOML basic string holding ``value`` exactly (control characters escaped)."""
    out = []
    for char in str(value):
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def md_line(value: Any) -> str:
    """One line of Markdown text: newlines folded to spaces, Jinja-free."""
    return " ".join(str(value).split())


def path_part(value: Any) -> str:
    """``value`` as one folder name: no separators, never ``.``/``..``/empty, not too long.

    The identity for every valid package name; ``pre_gen_project`` rejects the rest.
    """
    name = str(value)
    for char in ("/", "\\", "\0"):
        name = name.replace(char, "_")
    if name in ("", ".", ".."):
        name = "_" + name
    return name[:_MAX_FOLDER_NAME]


def jinja_literal(text: str) -> str:
    """A Jinja template that renders to ``text`` exactly, whatever it holds."""
    body = "".join(
        char if char.isascii() and char.isprintable() and char not in "\\'" else f"\\U{ord(char):08x}" for char in text
    )
    return "{{ '" + body + "' }}"


# -- answers stay data ---------------------------------------------------------------------------


@functools.cache
def _template_defaults() -> frozenset[str]:
    """Every string in this template's ``cookiecutter.json``: templates the author wrote."""
    found: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                collect(key)
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(json.loads((_TEMPLATE_FOLDER / "cookiecutter.json").read_text(encoding="utf-8")))
    return frozenset(found)


def _rendering_an_answer() -> bool:
    """True inside cookiecutter's ``render_variable``, which renders answers and defaults."""
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return False
        if frame.f_code.co_name == "render_variable" and frame.f_globals.get("__name__") == "cookiecutter.prompt":
            return True
        frame = frame.f_back
    return False


class GuardUnavailable(Exception):
    """This cookiecutter does not render answers the way the guard relies on."""


#: An answer that must come back as written: Jinja would render it as ``42``.
_PROBE = "{{ 6*7 }}"


def _check_render_variable() -> None:
    """Raise ``GuardUnavailable`` unless cookiecutter renders answers where the guard sees it.

    The guard recognizes an answer by ``cookiecutter.prompt.render_variable(env, raw,
    cookiecutter_dict)`` on the call stack. A release that renames or moves it, or renders
    answers another way, would silently turn the guard off: so check its shape, then render
    a probe answer through it and see that it stays data.
    """
    try:
        from cookiecutter import prompt
    except ImportError as error:
        raise GuardUnavailable(f"cookiecutter.prompt cannot be imported ({error})") from None
    render_variable = getattr(prompt, "render_variable", None)
    if not inspect.isfunction(render_variable):
        raise GuardUnavailable("cookiecutter.prompt.render_variable is gone")
    parameters = list(inspect.signature(render_variable).parameters)
    if parameters != ["env", "raw", "cookiecutter_dict"]:
        raise GuardUnavailable(
            f"cookiecutter.prompt.render_variable takes {parameters}, not (env, raw, cookiecutter_dict)"
        )
    try:
        rendered = render_variable(Environment(extensions=[TextFilters]), _PROBE, {})
    except Exception as error:
        raise GuardUnavailable(f"rendering a probe answer failed ({type(error).__name__}: {error})") from None
    if rendered != _PROBE:
        raise GuardUnavailable(f"the probe answer {_PROBE!r} was rendered as Jinja, to {rendered!r}")


def cookiecutter_version() -> str:
    """The installed cookiecutter's version, for messages; the pre-generation hook uses it too."""
    try:
        from importlib.metadata import version

        return version("cookiecutter")
    except Exception:
        return "(unknown version)"


def _refuse(reason: str) -> Exception:
    """The one-line error that stops the bake; cookiecutter's command line prints it alone."""
    message = (
        f"ERROR: this template cannot keep answers as data with cookiecutter {cookiecutter_version()}: {reason}. "
        f"Use a tested cookiecutter: python -m pip install 'cookiecutter>={TESTED_COOKIECUTTER[0]},"
        f"<={TESTED_COOKIECUTTER[-1]}'"
    )
    try:
        from cookiecutter.exceptions import UnknownExtension
    except ImportError:
        return RuntimeError(message)
    return UnknownExtension(message)


_guard = {"checked": False, "checking": False}


def _check_guard_once() -> None:
    if _guard["checked"] or _guard["checking"]:
        return  # checked already, or this is the probe's own environment
    _guard["checking"] = True
    try:
        _check_render_variable()
    except GuardUnavailable as unavailable:
        raise _refuse(str(unavailable)) from None
    finally:
        _guard["checking"] = False
    _guard["checked"] = True


class TextFilters(Extension):
    """Registers the filters and ``this_template``; keeps answers data and folder names path-free."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(
            py_str=py_str,
            toml_str=toml_str,
            md_line=md_line,
            path_part=path_part,
            package_slug=package_slug,
            pep440=pep440,
            project_urls=project_urls,
            recorded_answers=recorded_answers,
        )
        environment.globals["this_template"] = {"folder": str(_TEMPLATE_FOLDER)}
        _check_guard_once()

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if name is not None:
            return source  # a template file: answers reach it as values, never as source
        if (
            any(opener in source for opener in _JINJA_OPENERS)
            and source not in _template_defaults()
            and _rendering_an_answer()
        ):
            return jinja_literal(source)
        return source.replace(_PACKAGE_FOLDER, "{{cookiecutter.package_name | path_part}}")
