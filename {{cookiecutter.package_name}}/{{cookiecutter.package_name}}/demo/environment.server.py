"""What the demo and the tests run beside Grain for this sworker.

Nothing, for a server sworker: the worker's ``grain_run_sworker`` starts the
server. On one machine it listens on, and is reached at, loopback: set
explicitly here, whatever this node's name resolves to, unless you set
``HOST_ENV`` yourself (to try an address: its errors then show as on a cluster).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..client_support import CALL_TIMEOUT_ENV
from ..the_sworker import ADVERTISE_HOST_ENV, HOST_ENV

LOOPBACK = "127.0.0.1"
#: The demo's calls take milliseconds: a stalled server fails them in seconds, not after the
#: production default of an hour. A value already in the environment wins.
DEMO_CALL_TIMEOUT = "10"


@contextmanager
def local_service() -> Iterator[dict[str, str]]:
    """The environment variables the head and the worker need on one machine."""
    addresses = {} if os.environ.get(HOST_ENV) else {HOST_ENV: LOOPBACK, ADVERTISE_HOST_ENV: LOOPBACK}
    yield {**addresses, CALL_TIMEOUT_ENV: os.environ.get(CALL_TIMEOUT_ENV) or DEMO_CALL_TIMEOUT}
