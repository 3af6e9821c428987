"""The tasklet users submit: it runs on the head and calls the sworker's client.

Submit it with a resource without ``N``, e.g. ``(square @ Capacity(1))(x)``:
Grain sends tasklets whose resource has ``N`` (``Cores``, ``Node``) to ordinary
workers, and a ``Cores`` tasklet placed on an sworker crashes the head.
"""

from __future__ import annotations

from grain import GVAR
from grain.delayed import delayed

from .client import Client


def current_client() -> Client:
    """The client of the sworker instance this tasklet was placed on."""
    client = getattr(GVAR, "context", None)
    if isinstance(client, Exception):  # an instance the head refused (grain_context says why)
        raise client.with_traceback(None)
    if not isinstance(client, Client):
        raise RuntimeError(
            "this tasklet must run on a '{{ cookiecutter.package_name }}.the_sworker' instance, "
            f"but GVAR.context is {client!r}: set [worker] specialized_type = "
            "'{{ cookiecutter.package_name }}.the_sworker' in grain.toml and submit it as "
            "(square @ Capacity(1))(x)"
        )
    return client


@delayed
async def square(x: float) -> float:
    """``x * x``, computed by the sworker."""
    return await current_client().square(x)
