"""The Grain releases this package supports, and a check that says so clearly.

The sworker contract was measured on Grain 0.17, and a new Grain minor may change it, so
``pyproject.toml`` requires ``grain-scheduler>=0.17,<0.18``. An environment can still hold another
Grain (an install with ``--no-deps``, a shared cluster environment): ``check_grain_version()``
raises ``UnsupportedGrainError`` naming the installed and the supported versions and the fix.
``tests/test_grain_version.py`` runs it in this package's own test suite.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

#: The supported range; the same as the ``grain-scheduler`` requirement in pyproject.toml.
SUPPORTED_GRAIN = ">=0.17,<0.18"
_LOWEST = (0, 17)
_FIRST_UNSUPPORTED = (0, 18)
_FIX = "install a supported one with: python -m pip install 'grain-scheduler{spec}'"


class UnsupportedGrainError(RuntimeError):
    """The installed Grain is missing or outside ``SUPPORTED_GRAIN``."""


def release_of(text: str) -> tuple[int, ...]:
    """The release numbers of a version string: ``"0.17.1"`` -> ``(0, 17, 1)``."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if match is None:
        raise UnsupportedGrainError(f"cannot read the Grain version {text!r}: " + _FIX.format(spec=SUPPORTED_GRAIN))
    return tuple(int(part) for part in match.group(1).split("."))


def check_grain_version(installed: str | None = None) -> str:
    """Return the installed ``grain-scheduler`` version, or raise if it is not supported.

    ``installed`` overrides the version read from the environment (for tests).
    """
    if installed is None:
        try:
            installed = version("grain-scheduler")
        except PackageNotFoundError:
            raise UnsupportedGrainError(
                "grain-scheduler is not installed in this environment: " + _FIX.format(spec=SUPPORTED_GRAIN)
            ) from None
    if not _LOWEST <= release_of(installed) < _FIRST_UNSUPPORTED:
        raise UnsupportedGrainError(
            f"grain-scheduler {installed} is installed, but {{ cookiecutter.package_name }} supports "
            f"grain-scheduler{SUPPORTED_GRAIN} (its sworker contract was measured on Grain 0.17 and "
            "a new minor may change it): " + _FIX.format(spec=SUPPORTED_GRAIN)
        )
    return installed
