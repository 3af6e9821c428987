"""Rule 7: a call that blocks the event loop and does not come back (a sync wait on a reply that never comes).

No timeout inside the loop can fire while the loop is blocked: the kit stops
waiting for that run at its call limit, says where the loop was blocked, and
moves on (otherwise good_backendless).
"""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .good_backendless import GRAIN_SWORKER_CONFIG, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
#: Long past the corpus's call limit (the run's thread is left behind meanwhile, then ends).
BLOCKING_SECONDS = 20.0


class StuckClient:
    async def echo(self, x: Any) -> Any:
        time.sleep(BLOCKING_SECONDS)  # noqa: ASYNC251  (the broken form: a sync wait on the loop)
        return x


@asynccontextmanager
async def grain_context() -> AsyncIterator[StuckClient]:
    yield StuckClient()
