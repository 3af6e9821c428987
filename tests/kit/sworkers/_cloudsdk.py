"""A stand-in for a cloud provider's Python SDK: sync, built on httpx, configured at import.

Like many SDKs it reads its settings (endpoint, token) from the environment when
it is imported, keeps one ``httpx.Client`` (a thread-safe connection pool), and
raises its own error for anything that is not an answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from ._parts import ADDRESS_ENV, TOKEN_ENV, call_limit


@dataclass(frozen=True)
class Settings:
    endpoint: str
    token: str


#: Read once, at import, as SDKs do.
SETTINGS = Settings(f"http://{os.environ.get(ADDRESS_ENV, '127.0.0.1:9')}", os.environ.get(TOKEN_ENV, ""))


class SdkError(RuntimeError):
    """The service did not answer."""


class Service:
    """The SDK's client: one connection pool, blocking calls."""

    def __init__(self, settings: Settings = SETTINGS, timeout: float | None = None) -> None:
        timeout = call_limit() if timeout is None else timeout
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        self._http = httpx.Client(base_url=settings.endpoint, headers=headers, timeout=timeout)

    def echo(self, x: Any) -> Any:
        try:
            response = self._http.post("/echo", json={"x": x})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SdkError(f"the service did not answer: {exc!r}") from exc
        return response.json()["result"]

    def close(self) -> None:
        self._http.close()
