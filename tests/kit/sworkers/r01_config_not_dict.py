"""Rule 1: GRAIN_SWORKER_CONFIG is a list of pairs, not a dict (otherwise good_server)."""

from .good_server import grain_context, grain_run_sworker

GRAIN_SWORKER_CONFIG = [("BACKENDLESS", False)]

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
