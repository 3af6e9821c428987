"""What the server variant's tests share: running the sworker with a server written in the test."""

from __future__ import annotations

import sys

import pytest

from {{ cookiecutter.package_name }} import the_sworker


def use_server(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """Make the sworker start ``code`` (a Python script given host and port) as its server."""
    monkeypatch.setattr(the_sworker, "SERVER_COMMAND", [sys.executable, "-I", "-S", "-c", code, "{host}", "{port}"])
