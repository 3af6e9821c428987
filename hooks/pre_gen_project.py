"""Validate the answers before cookiecutter writes anything.

The answers arrive as JSON data (``tojson``), never as code. A rejected answer
exits with one line that names it, shows the value and says what to type instead.
The naming and version rules live in the template's ``local_extensions.py``, which
``cookiecutter.json``'s defaults use too; this hook loads it from the template's folder.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ANSWERS: dict[str, Any] = json.loads(r"""{{ cookiecutter | tojson }}""")
#: Where this template is: its folder holds ``local_extensions.py``.
THIS_TEMPLATE: dict[str, str] = json.loads(r"""{{ this_template | tojson }}""")


def load_rules() -> ModuleType:
    """The template's ``local_extensions.py``: one copy of each rule for defaults and checks."""
    path = Path(THIS_TEMPLATE["folder"]) / "local_extensions.py"
    spec = importlib.util.spec_from_file_location("template_rules", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the template's rules from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RULES = load_rules()
LICENSES = ("MIT", "BSD-3-Clause", "Apache-2.0", "Proprietary")
PROTOCOLS = ("json-lines", "http")
EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
MAX_CAPACITY = 10_000


class Rejected(ValueError):
    """An answer that cannot produce a working package."""


def check_package_name(value: object) -> None:
    name = str(value)
    hint = f"type a lower-case identifier such as {RULES.package_slug(name)!r}"
    if not name:
        raise Rejected(f"package_name is empty: {hint}")
    if "/" in name or "\\" in name or name.startswith("."):
        raise Rejected(f"package_name {name!r} is a path, not a name: {hint}")
    if len(name) > RULES.MAX_PACKAGE_NAME:
        raise Rejected(f"package_name {name!r} is longer than {RULES.MAX_PACKAGE_NAME} characters: {hint}")
    if not name.isascii():
        raise Rejected(f"package_name {name!r} has non-ASCII characters: {hint}")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise Rejected(
            f"package_name {name!r} is not a lower-case Python identifier "
            f"(letters, digits, underscores; no leading digit, hyphen, dot or capital): {hint}"
        )
    if RULES.is_keyword(name):
        raise Rejected(f"package_name {name!r} is a Python keyword: {hint}")
    if RULES.shadows_a_module(name):
        raise Rejected(f"package_name {name!r} would shadow the module {name!r} that the package imports: {hint}")


def check_capacity(value: object) -> None:
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= MAX_CAPACITY:
        raise Rejected(f"capacity {value!r} is not a whole number from 1 to {MAX_CAPACITY}: type e.g. 4")


def check_email(value: object) -> None:
    if not EMAIL.fullmatch(str(value)):
        raise Rejected(f"author_email {value!r} is not an email address: type e.g. 'you@example.com'")


def check_version(value: object) -> None:
    """Anything ``packaging`` accepts (``1.0-beta``, ``v1.0``); the files get its normalized form."""
    try:
        RULES.pep440(value)
    except ValueError:
        raise Rejected(f"version {value!r} is not a PEP 440 version: type e.g. '0.1.0' or '1.0b1'") from None


def check_repository_url(value: object) -> None:
    try:
        RULES.repository_url(value)
    except ValueError:
        raise Rejected(
            f"repository_url {value!r} is not a web address: type e.g. 'https://github.com/you/project', "
            "or leave it empty"
        ) from None


def check_license(value: object) -> None:
    if value not in LICENSES:
        raise Rejected(f"license {value!r} is not one of {', '.join(LICENSES)}: type one of those")


def check_protocol(value: object) -> None:
    if value not in PROTOCOLS:
        raise Rejected(f"protocol {value!r} is not one of {', '.join(PROTOCOLS)}: type json-lines or http")


#: How cookiecutter 2.7 and later read a yes/no answer given as text.
YES_NO_TEXT = frozenset("yes no true false 1 0 y n on off".split())


def check_backendless(value: object) -> None:
    if isinstance(value, bool):
        return
    if str(value).lower() in YES_NO_TEXT:  # cookiecutter before 2.7 passes `backendless=yes` through as text
        raise Rejected(
            f"backendless {value!r} reached the template as text, not yes or no: "
            f"cookiecutter {RULES.cookiecutter_version()} does not convert yes/no answers given on the command line "
            "(2.7.0 and later do): type yes or no at the prompt or in a config file, "
            "or python -m pip install 'cookiecutter>=2.7'"
        )
    raise Rejected(f"backendless {value!r} is not yes or no: type yes (someone else runs the service) or no")


def check_env_name(key: str, value: object) -> None:
    if not ENV_NAME.fullmatch(str(value)):
        raise Rejected(f"{key} {value!r} is not an environment variable name: type e.g. 'MY_SWORKER_URL'")


def check_text(key: str, value: object, *, required: bool) -> None:
    text = str(value)
    if required and not text.strip():
        raise Rejected(f"{key} is empty: type a short text")
    bad = sorted({char for char in text if (ord(char) < 0x20 and char not in "\t\n\r") or ord(char) == 0x7F})
    if bad:
        raise Rejected(f"{key} {text!r} contains the control character(s) {''.join(bad)!r}: remove them")


def validate(answers: dict[str, Any]) -> None:
    """Raise ``Rejected`` for the first answer that cannot produce a working package."""
    check_backendless(answers.get("backendless"))
    check_protocol(answers.get("protocol", PROTOCOLS[0]))
    check_text("project_name", answers.get("project_name", ""), required=True)
    check_package_name(answers.get("package_name", ""))
    check_text("description", answers.get("description", ""), required=False)
    check_text("author_name", answers.get("author_name", ""), required=True)
    check_email(answers.get("author_email", ""))
    check_repository_url(answers.get("repository_url", ""))
    check_version(answers.get("version", ""))
    check_license(answers.get("license"))
    check_capacity(answers.get("capacity", ""))
    for key in ("service_url_env", "api_token_env"):
        check_env_name(key, answers.get(key, ""))
    if answers.get("service_url_env") == answers.get("api_token_env"):
        raise Rejected("service_url_env and api_token_env are the same variable: give them different names")


def main() -> int:
    try:
        validate(ANSWERS)
    except Rejected as rejected:
        print(f"ERROR: {rejected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
