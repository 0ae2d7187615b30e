"""Settings every HTTP provider shares; a provider subclasses to add its own."""

from __future__ import annotations

import os
from typing import Literal

import attrs

from llmkernel.errors import AuthenticationError
from llmkernel_http.body import MAX_RESPONSE_BYTES


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1")


@attrs.frozen(kw_only=True)
class HTTPSettings:
    """The keys every HTTP provider accepts under ``[providers.NAME]``.

    The API key is never in config: ``api_key_env`` names the environment variable
    that holds it, read when the client is built; when it is unset, a key stored
    for the provider instance's name with ``llmkernel keys set NAME`` is used
    (:func:`llmkernel_http.keys.stored_key`).
    """

    base_url: str = ""
    api_key_env: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict, repr=False)  # may hold a secret
    timeout: float = 600.0  # the whole request, first byte to last
    connect_timeout: float = 10.0
    read_timeout: float = 120.0  # the longest silence between two chunks
    first_token_timeout: float | None = None  # streams: until the first event
    max_connections: int = 512
    max_keepalive_connections: int = 128
    models: list[str] = attrs.field(factory=list)  # declared models, for `llmkernel models`
    #: the connection pool under httpx: "aiohttp" (fast under concurrency, the
    #: default) or "httpx" (httpx's own; HTTP/2-free either way).
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    #: the largest body of an answer read whole, in bytes, before and after
    #: decoding its Content-Encoding (past it: MalformedResponseError)
    max_response_bytes: int = attrs.field(default=MAX_RESPONSE_BYTES, validator=_positive)

    def api_key(self, *, provider: str, model: str = "", required: bool = True) -> str | None:
        """The key from the environment, else the stored one; a clear error naming the
        variable if neither."""
        if not self.api_key_env:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            from llmkernel_http.keys import stored_key

            value = stored_key(provider)
        if not value and required:
            raise AuthenticationError(
                f"no API key: set the environment variable {self.api_key_env} "
                f"(or store one: llmkernel keys set {provider})",
                provider=provider,
                model=model,
            )
        return value or None
