"""The template's own Python (hooks, extensions, tests, benchmarks) is ruff-clean too."""

from __future__ import annotations

from conftest import TEMPLATE, run

OWN_CODE = ["hooks", "tests", "bench", "local_extensions.py"]


def test_template_code_passes_ruff() -> None:
    for command in (["ruff", "check", *OWN_CODE], ["ruff", "format", "--check", *OWN_CODE]):
        result = run(command, TEMPLATE)
        assert result.returncode == 0, result.stdout + result.stderr
