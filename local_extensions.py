"""Jinja filters that turn free-text answers into safe literals.

Answers such as a description may hold quotes, backslashes, newlines or ``{{``:
rendered through these filters they stay data in every generated file.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


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


class TextFilters(Extension):
    """Registers ``py_str``, ``toml_str`` and ``md_line``."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(py_str=py_str, toml_str=toml_str, md_line=md_line)
