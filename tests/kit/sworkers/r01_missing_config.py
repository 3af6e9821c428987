"""Rule 1: no GRAIN_SWORKER_CONFIG at all (otherwise good_backendless)."""

from .good_backendless import grain_context, grain_run_sworker

__all__ = ["grain_context", "grain_run_sworker"]
