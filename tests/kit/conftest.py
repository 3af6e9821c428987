"""Set-up for the kit's own tests: import the kit from the template folder, the corpus by dotted name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[2]
#: The folder holding ``sworker_conformance`` (copied verbatim into every package).
KIT_PARENT = TEMPLATE / "{{cookiecutter.package_name}}" / "tests"
KIT = KIT_PARENT / "sworker_conformance"

for entry in (str(KIT_PARENT), str(TEMPLATE)):  # the kit as a top-level package; tests.kit.sworkers
    if entry not in sys.path:
        sys.path.insert(0, entry)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_grain: runs a real Grain head, Gnaw and workers (slow tier)")
