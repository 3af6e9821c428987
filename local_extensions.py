"""Jinja filters that turn free-text answers into safe literals, and answers that stay data.

Answers such as a description may hold quotes, backslashes, newlines or ``{{``:
rendered through these filters they stay data in every generated file.

Two guards act on the templates cookiecutter builds from strings (``from_string``):

- **Answers are data, never templates.** With ``--no-input``, cookiecutter
  renders every extra-context and config-file answer as a Jinja template
  (``{{ 7*7 }}`` became ``49``, a lone ``{%`` crashed it, and Jinja expressions
  can reach Python objects). Here an answer that is not one of the template's
  own defaults in ``cookiecutter.json`` is turned into a literal before Jinja
  parses it, so ``--no-input``, prompts, ``--replay`` and config files all
  give the same answers.
- **The project folder's name is never a path.** Cookiecutter creates the
  folder named by ``package_name`` *before* ``pre_gen_project`` can reject it;
  ``../x`` or ``/abs`` would create it outside the output folder and ``a/b``
  would leave ``a/`` behind. The folder's name is made path-free here, so the
  rejected bake's folder lands inside the output folder and is removed.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_PACKAGE_FOLDER = "{{cookiecutter.package_name}}"
_JINJA_OPENERS = ("{{", "{%", "{#")
#: How far up the stack ``from_string`` may sit below cookiecutter's ``render_variable``.
_MAX_FRAMES = 30
_MAX_FOLDER_NAME = 100


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

    collect(json.loads((Path(__file__).resolve().parent / "cookiecutter.json").read_text(encoding="utf-8")))
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


class TextFilters(Extension):
    """Registers ``py_str``, ``toml_str``, ``md_line`` and ``path_part``; keeps answers data."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(py_str=py_str, toml_str=toml_str, md_line=md_line, path_part=path_part)

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
