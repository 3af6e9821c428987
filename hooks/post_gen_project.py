"""Keep the chosen variant's whole files, drop the other's, print the next steps once.

Idempotent: run again on a finished project (as cruft does on update), it
changes nothing. No git, no network, no installs: those break replay and cruft.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ANSWERS: dict[str, Any] = json.loads(r"""{{ cookiecutter | tojson }}""")

#: What both server variants hold, whatever the protocol: production code and the contract tests.
_SERVER: dict[str, str] = {
    # Production code of a server sworker (server_process.py uses it).
    "PKG/lifeline.py": "PKG/lifeline.py",
    "PKG/the_sworker.server.py": "PKG/the_sworker.py",
    "PKG/client_support.server.py": "PKG/client_support.py",
    "PKG/server_process.server.py": "PKG/server_process.py",
    "PKG/demo/environment.server.py": "PKG/demo/environment.py",
    "tests/test_lifecycle.server.py": "tests/test_lifecycle.py",
    "tests/server_support.server.py": "tests/server_support.py",
    "tests/test_demo_faults.server.py": "tests/test_demo_faults.py",
    # A stranger's instance never joins; losing one of two instances (issue 20).
    "PKG/instance_key.server.py": "PKG/instance_key.py",
    "tests/loss_support.server.py": "tests/loss_support.py",
    "tests/test_instance_loss.server.py": "tests/test_instance_loss.py",
    "tests/test_strangers.server.py": "tests/test_strangers.py",
    "tests/test_instance_key.server.py": "tests/test_instance_key.py",
}

#: variant -> {file in the template: its name in the generated package}. A file that several
#: variants list is kept by each, at the place each gives it; one no variant lists is kept by all.
VARIANT_FILES: dict[str, dict[str, str]] = {
    "server-json-lines": {
        **_SERVER,
        "PKG/client.jsonlines.py": "PKG/client.py",
        "PKG/demo/server.jsonlines.py": "PKG/demo/server.py",
        "tests/test_client.jsonlines.py": "tests/test_json_lines_client.py",
        "tests/test_stand_in.jsonlines.py": "tests/test_stand_in_server.py",
    },
    "server-http": {
        **_SERVER,
        "PKG/client.http.py": "PKG/client.py",
        "PKG/demo/server.http.py": "PKG/demo/server.py",
        "tests/test_client.http.py": "tests/test_http_client.py",
        "tests/test_stand_in.http.py": "tests/test_stand_in_server.py",
    },
    "backendless": {
        # Only the demo harness starts processes here: it is harness, not production.
        "PKG/lifeline.py": "PKG/demo/lifeline.py",
        "PKG/the_sworker.backendless.py": "PKG/the_sworker.py",
        "PKG/client.backendless.py": "PKG/client.py",
        "PKG/demo/environment.backendless.py": "PKG/demo/environment.py",
        "PKG/demo/service.backendless.py": "PKG/demo/service.py",
        "tests/test_lifecycle.backendless.py": "tests/test_lifecycle.py",
        "tests/test_client.backendless.py": "tests/test_client.py",
        "tests/test_demo_faults.backendless.py": "tests/test_demo_faults.py",
        "tests/test_stand_in.backendless.py": "tests/test_stand_in_service.py",
    },
}


#: license answer -> its whole-file text in the template; the chosen one becomes LICENSE.
LICENSE_FILES: dict[str, str] = {
    "MIT": "LICENSE.MIT",
    "BSD-3-Clause": "LICENSE.BSD-3-Clause",
    "Apache-2.0": "LICENSE.Apache-2.0",
    "Proprietary": "LICENSE.Proprietary",
}


#: Files only a package that may be published on PyPI has (a Proprietary one never is).
PUBLIC_ONLY = (".github/workflows/release.yml",)


def variant_of(answers: dict[str, Any]) -> str:
    """``backendless``, or ``server-<protocol>`` (a project baked before the question: JSON lines)."""
    if answers["backendless"] is True:
        return "backendless"
    return f"server-{answers.get('protocol', 'json-lines')}"


def apply_variant(project: Path, package: str, variant: str) -> None:
    """Rename the chosen variant's files into place and delete every other variant file."""
    chosen = VARIANT_FILES[variant]
    for name, files in VARIANT_FILES.items():
        for source, target in files.items():
            source_path = project / source.replace("PKG", package)
            if not source_path.exists():
                continue  # already applied
            if name == variant:
                source_path.replace(project / target.replace("PKG", package))
            elif source not in chosen:
                source_path.unlink(missing_ok=True)  # listed by two other variants: gone already


def apply_license(project: Path, license_name: str) -> None:
    """Rename the chosen license's file to LICENSE and delete the others (a no-op once done)."""
    for name, source in LICENSE_FILES.items():
        source_path = project / source
        if not source_path.exists():
            continue  # already applied
        if name == license_name:
            source_path.replace(project / "LICENSE")
        else:
            source_path.unlink()
    if license_name == "Proprietary":
        for name in PUBLIC_ONLY:
            (project / name).unlink(missing_ok=True)


def remove_bytecode(project: Path) -> None:
    """Drop __pycache__ folders that a verbatim copy may have carried over."""
    for cache in sorted(project.rglob("__pycache__"), reverse=True):
        for compiled in cache.iterdir():
            compiled.unlink()
        cache.rmdir()


def is_throwaway_render(project: Path, answers: dict[str, Any]) -> bool:
    """True when a tool renders the package into a temporary folder only to compare it.

    ``cruft update`` renders the old and the new template that way, and ``cruft diff`` the
    recorded one: no one is creating a package there, so the next steps would only be noise
    (in the middle of a diff). cookiecutter's own bakes record their output folder
    (``_output_dir``); cruft calls cookiecutter's ``generate_files`` without one, into a
    fresh ``tempfile`` folder.
    """
    if "_output_dir" in answers:
        return False
    parent = project.resolve().parent
    return parent.parent == Path(tempfile.gettempdir()).resolve() and parent.name.startswith("tmp")


#: How the next steps name a server variant's protocol.
PROTOCOL_NAMES = {"json-lines": "JSON lines over TCP", "http": "HTTP"}


def next_steps(package: str, variant: str) -> str:
    kind, _, protocol = variant.partition("-")
    speaking = f" (its client speaks {PROTOCOL_NAMES[protocol]})" if protocol else ""
    return (
        f"Created the {kind} sworker package {package!r}{speaking}. Next:\n"
        f"  cd {package}\n"
        f"  python -m pip install --upgrade pip && python -m pip install -e '.[demo]' --group dev\n"
        f"  python -m {package}.demo        # a batch of tasklets on a real local Grain\n"
        f"  python -m pytest                # conformance suite and end-to-end tests\n"
        f"  pre-commit install              # lint, format and type checks on every commit, offline\n"
        + (
            f"Then put in your own service's client: {package}/client.py (see README.md)."
            if variant == "backendless"
            else "Then put in your own server: README.md, 'Put in your own server', a checklist that ends green."
        )
    )


def main() -> int:
    package = ANSWERS["package_name"]
    variant = variant_of(ANSWERS)
    apply_variant(Path.cwd(), package, variant)
    apply_license(Path.cwd(), ANSWERS["license"])
    remove_bytecode(Path.cwd())
    if not is_throwaway_render(Path.cwd(), ANSWERS):
        print(next_steps(package, variant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
