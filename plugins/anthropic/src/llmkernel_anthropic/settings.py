"""The ``[providers.NAME]`` keys an Anthropic provider accepts."""

from __future__ import annotations

from typing import Literal

import attrs

from llmkernel_http import HTTPSettings

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_API_VERSION = "2023-06-01"


@attrs.frozen(kw_only=True)
class AnthropicSettings(HTTPSettings):
    """Anthropic's settings: the shared HTTP keys plus Anthropic's own.

    ``base_url`` is the API root as Anthropic's docs write it; requests go to
    ``{base_url}/v1/messages`` and ``{base_url}/v1/models``. The key is sent as
    ``x-api-key``.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = "ANTHROPIC_API_KEY"
    #: the ``anthropic-version`` header.
    api_version: str = DEFAULT_API_VERSION
    #: beta features, sent comma-separated in the ``anthropic-beta`` header.
    beta: list[str] = attrs.field(factory=list)
    #: ``max_tokens`` for requests that set none (Anthropic requires it).
    default_max_tokens: int = 4096
    #: prompt caching: put a ``cache_control`` breakpoint on the last system block
    #: of every request ("5m" or "1h", the cache's lifetime), so a long system
    #: prompt is written to the cache once and read back by later requests.
    cache_system: Literal["5m", "1h"] | None = None
    #: the same for the tool definitions (a breakpoint on the last tool).
    cache_tools: Literal["5m", "1h"] | None = None

    def __attrs_post_init__(self) -> None:
        if not self.base_url:
            raise ValueError("base_url must not be empty")
        if self.default_max_tokens < 1:
            raise ValueError("default_max_tokens must be at least 1")
        if not self.api_version:
            raise ValueError("api_version must not be empty")

    @property
    def api_root(self) -> str:
        """``base_url`` without a trailing slash or a trailing ``/v1``."""
        root = self.base_url.rstrip("/")
        return root.removesuffix("/v1")
