"""Rule 1: BACKENDLESS = "false", a str that Grain reads as True (otherwise good_server)."""

from .good_server import grain_context, grain_run_sworker

GRAIN_SWORKER_CONFIG = {"BACKENDLESS": "false"}

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
