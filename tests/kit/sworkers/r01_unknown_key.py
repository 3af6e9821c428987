"""Rule 1: a misspelt key, BACKENDLES; Grain ignores it and treats the module as a server one."""

from .good_backendless import grain_context, grain_run_sworker

GRAIN_SWORKER_CONFIG = {"BACKENDLES": True}

__all__ = ["GRAIN_SWORKER_CONFIG", "grain_context", "grain_run_sworker"]
