"""Client for the remote service: JSON over HTTP, with the token from the environment.

One client is shared by every tasklet at once (up to the instance's capacity);
``httpx.AsyncClient`` pools connections and is safe for that. A service that is
gone or refuses the call always raises: no error is ever taken for a result.
"""

from __future__ import annotations

import functools
import os
import ssl
from typing import Any

import anyio
import httpx

URL_ENV = {{ cookiecutter.service_url_env | py_str }}
TOKEN_ENV = {{ cookiecutter.api_token_env | py_str }}
REQUEST_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0


class MissingSettingError(RuntimeError):
    """A required environment variable is not set."""


class ServiceUnavailableError(ConnectionError):
    """The service could not be reached, or the connection broke."""


class RemoteError(RuntimeError):
    """The service answered the call with an error."""


def required_env(name: str, what: str) -> str:
    """The value of environment variable ``name``; a clear error naming it if unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise MissingSettingError(f"set the environment variable {name} to {what} before starting Grain")
    return value


@functools.cache
def tls_context() -> ssl.SSLContext | bool:
    """One TLS context per process, shared by every client: building one loads the CA bundle (~0.1 s)."""
    create = getattr(httpx, "create_ssl_context", None)  # httpx >= 0.28; older: its default
    return create() if create is not None else True


class Client:
    """Calls the service's ``POST /<op>`` endpoints; safe for concurrent tasklets."""

    def __init__(self, base_url: str, token: str) -> None:
        self._base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=REQUEST_TIMEOUT,
            verify=tls_context(),
        )

    @classmethod
    def from_environment(cls) -> Client:
        """The client for the service named by ``URL_ENV``, authenticated by ``TOKEN_ENV``."""
        return cls(
            required_env(URL_ENV, "the service's URL, e.g. https://api.example.com"),
            required_env(TOKEN_ENV, "your API token for the service"),
        )

    async def square(self, x: float) -> float:
        """``x * x``, computed by the service."""
        return float(await self.call("square", x=x))

    async def call(self, op: str, **params: Any) -> Any:
        """POST ``params`` to ``/<op>`` and return the ``result`` of the JSON reply."""
        try:
            response = await self._http.post(f"/{op}", json=params)
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
