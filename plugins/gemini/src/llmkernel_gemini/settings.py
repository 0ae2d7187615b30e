"""The ``[providers.NAME]`` keys a Gemini provider accepts."""

from __future__ import annotations

from typing import Literal

import attrs

from llmkernel_http import HTTPSettings

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_KEY_ENV = "GEMINI_API_KEY"
DEFAULT_API_VERSION = "v1beta"
#: the most texts Gemini takes in one ``batchEmbedContents`` call
MAX_EMBEDDING_BATCH = 100

SchemaFormat = Literal["openapi", "json_schema"]


@attrs.frozen(kw_only=True)
class GeminiSettings(HTTPSettings):
    """Gemini's settings: the shared HTTP keys plus Gemini's own.

    ``base_url`` is the API root without the version; the client adds
    ``/<api_version>``. The key travels in the ``x-goog-api-key`` header, never in
    the URL. ``api_key_env`` defaults to ``GEMINI_API_KEY``; set it to
    ``GOOGLE_API_KEY`` to use that variable instead.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = DEFAULT_API_KEY_ENV
    #: the API version path: ``v1beta`` (every feature) or ``v1`` (stable subset).
    api_version: str = DEFAULT_API_VERSION
    #: how JSON schemas (tool parameters, structured output) are sent:
    #: ``openapi`` uses ``parameters``/``responseSchema`` (Gemini's OpenAPI subset;
    #: keys it rejects are dropped and ``$ref`` is inlined), ``json_schema`` sends the
    #: schema unchanged as ``parametersJsonSchema``/``responseJsonSchema`` (v1beta).
    schema_format: SchemaFormat = "openapi"
    #: texts per ``batchEmbedContents`` call (Gemini takes at most 100).
    embedding_batch_size: int = MAX_EMBEDDING_BATCH

    def __attrs_post_init__(self) -> None:
        if not self.base_url:
            raise ValueError("base_url must not be empty")
        if not self.api_version or "/" in self.api_version.strip("/"):
            raise ValueError("api_version must be a single path segment such as 'v1beta'")
        if not 1 <= self.embedding_batch_size <= MAX_EMBEDDING_BATCH:
            raise ValueError(f"embedding_batch_size must be between 1 and {MAX_EMBEDDING_BATCH}")

    @property
    def api_root(self) -> str:
        """``base_url`` with the version path: ``https://.../v1beta``."""
        return f"{self.base_url.rstrip('/')}/{self.api_version.strip('/')}"
