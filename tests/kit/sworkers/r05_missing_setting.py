"""Rule 5: grain_context needs a setting the head's environment lacks (otherwise cloud_sdk_backendless).

Like many SDKs, the client refuses to start without its token, and says which
variable to set. The module is right; what is missing is the environment (the
kit is run without ``--sworker-environment`` giving the token).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._parts import TOKEN_ENV
from .cloud_sdk_backendless import GRAIN_SWORKER_CONFIG, AsyncService, grain_run_sworker
from .cloud_sdk_backendless import grain_context as sdk_context

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]


class MissingSettingError(RuntimeError):
    """The SDK's own error for a setting that is not there."""


@asynccontextmanager
async def grain_context() -> AsyncIterator[AsyncService]:
    if not os.environ.get(TOKEN_ENV):
        raise MissingSettingError(f"no API token: set the environment variable {TOKEN_ENV}")
    async with sdk_context() as client:
        yield client
