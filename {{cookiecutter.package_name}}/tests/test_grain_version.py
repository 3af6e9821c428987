"""The installed Grain is one this package supports, and a wrong one is reported clearly.

The supported range has one source: the ``grain-scheduler`` requirement in pyproject.toml.
It is checked with ``packaging``, as pip checks it, so a pre-release outside the range
(``0.17.0rc1`` is older than ``0.17``) is rejected too.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

PROJECT = Path(__file__).resolve().parents[1]
PACKAGE = "{{ cookiecutter.package_name }}"


def supported_grain() -> SpecifierSet:
    """The ``grain-scheduler`` range that pyproject.toml requires."""
    dependencies = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in dependencies:
        requirement = Requirement(dependency)
        if requirement.name == "grain-scheduler":
            return requirement.specifier
    raise AssertionError("pyproject.toml does not require grain-scheduler")


def spelled(specifier: SpecifierSet) -> str:
    """``>=0.17,<0.18``: lower bound first, as people write it."""
    return ",".join(sorted((str(part) for part in specifier), reverse=True))


def check_grain_version(installed: str) -> None:
    """Raise, naming both versions and the fix, unless ``installed`` is in the supported range."""
    supported = spelled(supported_grain())
    if not supported_grain().contains(installed):
        raise AssertionError(
            f"grain-scheduler {installed} is installed, but {PACKAGE} supports grain-scheduler{supported} "
            f"(its sworker contract was measured on that Grain, and a new minor may change it): "
            f"install a supported one with: python -m pip install 'grain-scheduler{supported}'"
        )


def test_the_installed_grain_is_supported() -> None:
    try:
        installed = version("grain-scheduler")
    except PackageNotFoundError:
        supported = spelled(supported_grain())
        pytest.fail(f"grain-scheduler is not installed: python -m pip install 'grain-scheduler{supported}'")
    check_grain_version(installed)


@pytest.mark.parametrize("installed", ["0.17", "0.17.0", "0.17.1", "0.17.12.post1"])
def test_supported_versions_pass(installed: str) -> None:
    check_grain_version(installed)


@pytest.mark.parametrize("installed", ["0.16.9", "0.17.0rc1", "0.17.0.dev3", "0.18.0", "0.18.0rc1", "1.0.0"])
def test_other_versions_are_reported_with_the_fix(installed: str) -> None:
    with pytest.raises(AssertionError) as raised:
        check_grain_version(installed)
    message = str(raised.value)
    assert f"grain-scheduler {installed} is installed" in message
    assert "supports grain-scheduler>=0.17,<0.18" in message
    assert "pip install 'grain-scheduler>=0.17,<0.18'" in message
