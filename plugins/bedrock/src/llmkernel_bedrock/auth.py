"""Signing Bedrock requests: SigV4 with botocore's signer and credential chain, or a
Bedrock API key as a bearer token.

:class:`SigV4` is an ``httpx.Auth`` flow: the provider's base applies it to every
request it sends (streams through httpx's client, answers read whole over the
kernel's own connections), so the signature covers exactly the URL, headers and
body sent. botocore is imported here only, on the first request, never when the
plugin loads. Resolving credentials may read files or ask an instance metadata
service, so it runs in a thread; refreshing temporary credentials does too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import Any

import attrs
import httpx

from llmkernel import errors
from llmkernel_http import Secrets, collect_secrets

__all__ = ["SIGNING_NAME", "AwsSigner", "SigV4", "resolve_region"]

#: SigV4 signs Bedrock Runtime and Bedrock requests with the service name "bedrock".
SIGNING_NAME = "bedrock"
_SIGNED = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")
#: the request headers signed besides host and the x-amz-* ones
_COVERED = ("accept", "content-type")


def _session(profile: str | None) -> Any:
    import botocore.session  # type: ignore[import-untyped]

    return botocore.session.Session(profile=profile)


def resolve_region(region: str | None, profile: str | None) -> str | None:
    """``region``, else ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's region."""
    if region:
        return region
    found = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if found:
        return found
    value = _session(profile).get_config_variable("region")
    return value if isinstance(value, str) and value else None


@attrs.define(kw_only=True)
class AwsSigner:
    """Signs requests with SigV4 for one region, using credentials resolved once by
    botocore's chain and refreshed when they near expiry. Never shows a secret in
    its repr. ``secrets`` holds the secret key and session token last signed with,
    for redaction."""

    provider: str
    region: str
    profile: str | None = None
    _credentials: Any = attrs.field(default=None, repr=False)
    _seen: tuple[str, str | None] | None = attrs.field(default=None, repr=False)
    secrets: Secrets = attrs.field(factory=Secrets, repr=False)

    async def _frozen(self, model: str) -> Any:
        if self._credentials is None:
            # Two first calls at once may both resolve; the chain is idempotent.
            found = await asyncio.to_thread(self._resolve)
            if found is None:
                raise errors.AuthenticationError(
                    "no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE or profile = ...), "
                    "SSO, or run where a container/instance role is available; or "
                    "set api_key_env to use a Bedrock API key",
                    provider=self.provider,
                    model=model,
                )
            self._credentials = found
        credentials = self._credentials
        refresh = getattr(credentials, "refresh_needed", None)
        try:
            if refresh is not None and refresh():
                frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
            else:
                frozen = credentials.get_frozen_credentials()
        except Exception as exc:  # botocore's refresh failures
            raise errors.AuthenticationError(
                f"AWS credentials could not be refreshed ({type(exc).__name__})",
                provider=self.provider,
                model=model,
            ) from None
        self._remember(frozen)
        return frozen

    def _remember(self, frozen: Any) -> None:
        """Keep the secret key and session token for redaction (the previous ones
        too, for an answer to a request signed before a refresh)."""
        seen = (str(frozen.secret_key or ""), frozen.token or None)
        if seen == self._seen:
            return
        self._seen = seen
        secret, token = seen
        headers = {"x-amz-security-token": token} if token else {}
        self.secrets = collect_secrets(secret, headers, extra=self.secrets[:8])

    def _resolve(self) -> Any:
        try:
            return _session(self.profile).get_credentials()
        except Exception as exc:  # a broken profile, an SSO cache that expired...
            raise errors.AuthenticationError(
                f"AWS credentials could not be loaded ({type(exc).__name__}: {exc})",
                provider=self.provider,
            ) from None

    async def sign(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, *, model: str
    ) -> dict[str, str]:
        """The headers to add to the request: ``Authorization``, ``X-Amz-Date`` and,
        for temporary credentials, ``X-Amz-Security-Token``. ``url`` must be exactly
        the URL sent (path already percent-encoded) and ``headers`` every header to
        sign (``host`` is taken from the URL)."""
        credentials = await self._frozen(model)
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(credentials, SIGNING_NAME, self.region).add_auth(request)
        return {name: value for name, value in request.headers.items() if name.lower() in _SIGNED}


class SigV4(httpx.Auth):
    """The ``httpx.Auth`` flow that signs each request with :class:`AwsSigner`
    (``Authorization``, ``X-Amz-Date`` and, for temporary credentials,
    ``X-Amz-Security-Token``), over the exact URL and body sent; ``accept`` and
    ``content-type`` are signed with ``host``. Async only: the credential chain may
    run in a thread."""

    requires_request_body = True

    def __init__(self, signer: AwsSigner) -> None:
        self.signer = signer

    def __repr__(self) -> str:
        return f"<SigV4 {self.signer.region!r}>"

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        covered = {name: request.headers[name] for name in _COVERED if name in request.headers}
        signed = await self.signer.sign(
            request.method, str(request.url), covered, request.content, model=""
        )
        request.headers.update(signed)
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("SigV4 signs async requests only")
