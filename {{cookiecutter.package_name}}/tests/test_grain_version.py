"""The installed Grain is one this package supports, and a wrong one is reported clearly."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.grain_version import SUPPORTED_GRAIN, UnsupportedGrainError, check_grain_version

PROJECT = Path(__file__).resolve().parents[1]


def test_the_installed_grain_is_supported() -> None:
    # Fails with "grain-scheduler X is installed, but ... supports grain-scheduler>=0.17,<0.18".
    check_grain_version()


def test_the_range_is_the_one_pyproject_requires() -> None:
    dependencies = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"grain-scheduler{SUPPORTED_GRAIN}" in dependencies


@pytest.mark.parametrize("installed", ["0.17", "0.17.0", "0.17.1", "0.17.12.post1"])
def test_supported_versions_pass(installed: str) -> None:
    assert check_grain_version(installed) == installed


@pytest.mark.parametrize("installed", ["0.16.9", "0.18.0", "0.18.0rc1", "1.0.0"])
def test_other_versions_are_reported_with_the_fix(installed: str) -> None:
    with pytest.raises(UnsupportedGrainError) as raised:
        check_grain_version(installed)
    message = str(raised.value)
    assert f"grain-scheduler {installed} is installed" in message
    assert f"supports grain-scheduler{SUPPORTED_GRAIN}" in message
    assert f"pip install 'grain-scheduler{SUPPORTED_GRAIN}'" in message
