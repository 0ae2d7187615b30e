"""Bearer tokens for Azure OpenAI, from a command or from Entra ID (azure-identity,
imported on the first request only), cached until they near expiry, and put on each
request by :class:`BearerTokens`, an ``httpx.Auth`` flow the provider's base applies
on every path. (The ``api-key`` header from an environment variable is the base
provider's: ``api_key_env``.)"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

import attrs
import httpx

from llmkernel import errors
from llmkernel_azure.settings import AzureSettings
from llmkernel_http import Secrets, collect_secrets

__all__ = ["BearerTokens", "Credentials"]

_MARGIN = 60.0  # refresh a token this many seconds before it expires
_KEPT = 4  # the tokens redacted from errors: the current one and a few before it


@attrs.define(kw_only=True)
class Credentials:
    """Gives the bearer token header for each request (none with an API key), and
    the tokens to redact from errors. Never shows a secret in its repr."""

    provider: str
    settings: AzureSettings
    _token: str | None = attrs.field(default=None, repr=False)
    _expires: float = attrs.field(default=0.0, repr=False)
    _entra: Any = attrs.field(default=None, repr=False)
    _lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, repr=False)
    _recent: list[str] = attrs.field(factory=list, repr=False)
    #: the recent tokens (and their header values), for redaction
    secrets: Secrets = attrs.field(factory=Secrets, repr=False)

    async def headers(self, model: str) -> dict[str, str]:
        """``{"authorization": "Bearer ..."}`` with a fresh token, or ``{}`` when
        the API key authenticates."""
        settings = self.settings
        if not settings.token_auth:
            return {}
        if self._stale():
            async with self._lock:  # one command or Entra call for concurrent requests
                if self._stale():
                    if settings.token_command is not None:
                        token, lifetime = await asyncio.to_thread(self._run_command, model)
                    else:
                        token, lifetime = await asyncio.to_thread(self._entra_token, model)
                    self._remember(token)
                    self._token, self._expires = token, time.monotonic() + lifetime
        return {"authorization": f"Bearer {self._token}"}

    def _stale(self) -> bool:
        return self._token is None or time.monotonic() >= self._expires - _MARGIN

    def _remember(self, token: str) -> None:
        self._recent = [token, *(t for t in self._recent if t != token)][:_KEPT]
        self.secrets = collect_secrets(
            None, *({"authorization": f"Bearer {t}"} for t in self._recent)
        )

    def _run_command(self, model: str) -> tuple[str, float]:
        command = self.settings.token_command or []
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise errors.AuthenticationError(
                f"token_command {command[0]!r} could not run ({type(exc).__name__}: {exc})",
                provider=self.provider,
                model=model,
            ) from None
        token = done.stdout.strip()
        if done.returncode != 0 or not token:
            detail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise errors.AuthenticationError(
                f"token_command {command[0]!r} failed (exit {done.returncode}): {detail[0][:200]}",
                provider=self.provider,
                model=model,
            )
        return token, self.settings.token_ttl + _MARGIN

    def _entra_token(self, model: str) -> tuple[str, float]:
        try:
            if self._entra is None:
                from azure.identity import DefaultAzureCredential  # type: ignore[import-not-found,unused-ignore]

                self._entra = DefaultAzureCredential()
            found = self._entra.get_token(self.settings.entra_scope)
        except ImportError:
            raise errors.AuthenticationError(
                "entra = true needs azure-identity: pip install 'llmkernel-azure[entra]'",
                provider=self.provider,
                model=model,
            ) from None
        except Exception as exc:  # azure-identity's ClientAuthenticationError and kin
            raise errors.AuthenticationError(
                f"Entra ID gave no token ({type(exc).__name__}: {str(exc)[:300]})",
                provider=self.provider,
                model=model,
            ) from None
        return str(found.token), max(0.0, float(found.expires_on) - time.time())


class BearerTokens(httpx.Auth):
    """The ``httpx.Auth`` flow that puts :class:`Credentials`' current token (fetched
    or refreshed first) on each request. Async only: fetching runs in a thread."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def __repr__(self) -> str:
        return "<BearerTokens>"

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers.update(await self.credentials.headers(""))
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("BearerTokens authenticates async requests only")
