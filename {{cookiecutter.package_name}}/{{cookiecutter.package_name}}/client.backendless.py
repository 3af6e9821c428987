"""Client for the remote service: JSON over HTTP, with the token from the environment.

``URL_ENV`` holds the service's base URL; a path in it (``https://api.example.com/v1``) is kept,
and each call goes to ``<base URL>/<op>``.

One client is shared by every tasklet at once (up to the instance's capacity);
``httpx.AsyncClient`` pools connections and is safe for that. A service that is
gone or refuses the call always raises: no error is ever taken for a result,
and a call that gets no answer within ``CALL_TIMEOUT_ENV`` seconds raises too.
"""

from __future__ import annotations

import functools
import math
import os
import ssl
from typing import Any

import anyio
import httpx

URL_ENV = {{ cookiecutter.service_url_env | py_str }}
TOKEN_ENV = {{ cookiecutter.api_token_env | py_str }}
#: Seconds one call may take, from sending the request to the whole reply (the head's environment).
CALL_TIMEOUT_ENV = "{{ cookiecutter.package_name | upper }}_CALL_TIMEOUT"
#: An hour: long jobs fit, and a stalled service still fails its calls in the end.
DEFAULT_CALL_TIMEOUT = 3600.0
#: Opening a connection is quick, however long the calls take.
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0


class MissingSettingError(RuntimeError):
    """A required environment variable is not set."""


class ServiceUnavailableError(ConnectionError):
    """The service could not be reached, or the connection broke."""


class ServiceTimeoutError(TimeoutError):
    """The service did not answer in time: it is stalled, or the job outgrew the call limit."""


class RemoteError(RuntimeError):
    """The service answered the call with an error."""


def required_env(name: str, what: str) -> str:
    """The value of environment variable ``name``; a clear error naming it if unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise MissingSettingError(f"set the environment variable {name} to {what} before starting Grain")
    return value


def call_timeout() -> float:
    """The per-call limit in seconds, from ``CALL_TIMEOUT_ENV`` (``inf``: no limit)."""
    raw = os.environ.get(CALL_TIMEOUT_ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_CALL_TIMEOUT
    except ValueError:
        seconds = math.nan
    if not seconds > 0:  # also rejects nan
        raise ValueError(f"{CALL_TIMEOUT_ENV}={raw!r} is not a positive number of seconds")
    return seconds


@functools.cache
def tls_context() -> ssl.SSLContext | bool:
    """One TLS context per process, shared by every client: building one loads the CA bundle (~0.1 s)."""
    create = getattr(httpx, "create_ssl_context", None)  # httpx >= 0.28; older: its default
    return create() if create is not None else True


class Client:
    """Calls the service's ``POST /<op>`` endpoints; safe for concurrent tasklets."""

    def __init__(self, base_url: str, token: str, *, call_timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        self._base_url = base_url.rstrip("/")
        self._call_timeout = call_timeout
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers={"Authorization": f"Bearer {token}"},
            # The call limit bounds each call as a whole (httpx's own limits are per read, per write).
            timeout=httpx.Timeout(None, connect=min(CONNECT_TIMEOUT, call_timeout)),
            verify=tls_context(),
        )

    @classmethod
    def from_environment(cls) -> Client:
        """The client for the service named by ``URL_ENV``, authenticated by ``TOKEN_ENV``."""
        return cls(
            required_env(URL_ENV, "the service's base URL, e.g. https://api.example.com/v1"),
            required_env(TOKEN_ENV, "your API token for the service"),
            call_timeout=call_timeout(),
        )

    async def square(self, x: float) -> float:
        """``x * x``, computed by the service."""
        return float(await self.call("square", x=x))

    async def call(self, op: str, **params: Any) -> Any:
        """POST ``params`` to ``/<op>`` and return the ``result`` of the JSON reply."""
        try:
            with anyio.fail_after(self._call_timeout):
                response = await self._http.post(f"/{op}", json=params)
        except TimeoutError:
            raise ServiceTimeoutError(
                f"the service at {self._base_url} ({URL_ENV}) did not answer {op!r} within {self._call_timeout:g} s "
                f"(the limit is {CALL_TIMEOUT_ENV}): it is stalled, or the job needs a longer limit"
            ) from None
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(
                f"cannot reach the service at {self._base_url} ({URL_ENV}) for {op!r}: "
                f"{type(exc).__name__} {exc}".rstrip()
            ) from exc
        if response.status_code in (401, 403):
            raise RemoteError(f"the service at {self._base_url} refused the token in {TOKEN_ENV} for {op!r}")
        try:
            reply = response.json()
        except ValueError:
            reply = {}
        if response.is_error or "result" not in reply:
            detail = reply.get("error") or response.text[:200]
            raise RemoteError(f"the service at {self._base_url} failed {op!r} (HTTP {response.status_code}): {detail}")
        return reply["result"]

    async def aclose(self) -> None:
        """Close the connection pool; tolerates a service that is gone already."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            await self._http.aclose()
