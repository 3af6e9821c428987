"""Rule 8: a service that refuses calls above its own limit (HTTP 429), at a Capacity above it.

The module is good_http_backendless; its service (``_parts.rate_limited_service``)
lets 2 requests be in flight. At V = 4 two of every four calls are refused; at
V = 2 every call succeeds. The fix is V, and bounded retries, not a lock.
"""

from .good_http_backendless import GRAIN_SWORKER_CONFIG, grain_context, grain_run_sworker

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
