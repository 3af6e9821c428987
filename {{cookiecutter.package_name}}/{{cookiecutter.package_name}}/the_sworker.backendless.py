"""Grain specialized worker, backendless: the service runs elsewhere (e.g. a cloud API).

Grain runs both context managers in the head process: ``grain_run_sworker()``
only names the instance, and ``grain_context()`` builds the client that
tasklets reach as ``GVAR.context``. The endpoint and the credential come from
environment variables read in ``grain_context``: the yielded fields travel
through Gnaw (which keeps them after the head exits), so they never hold a secret.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .client import Client

GRAIN_SWORKER_CONFIG: dict[str, object] = {"BACKENDLESS": True}

#: One instance per head; Grain merges identical backendless names.
INSTANCE_NAME = "{{ cookiecutter.package_name }}"


@asynccontextmanager
async def grain_run_sworker() -> AsyncIterator[dict[str, object]]:
    """Nothing to start: someone else runs the service. Yield the instance's name."""
    yield {"name": INSTANCE_NAME}


@asynccontextmanager
async def grain_context() -> AsyncIterator[Client]:
    """Build the client every tasklet shares, from the environment of the head."""
    client = Client.from_environment()
    try:
        yield client
    finally:
        await client.aclose()
