"""The ``[providers.NAME]`` keys an Ollama provider accepts."""

from __future__ import annotations

from typing import Any

import attrs

from llmkernel_http import HTTPSettings

DEFAULT_BASE_URL = "http://localhost:11434"


@attrs.frozen(kw_only=True)
class OllamaSettings(HTTPSettings):
    """Ollama's settings: the shared HTTP keys plus Ollama's own.

    ``base_url`` is the server root (the native API lives under ``/api``). No key is
    needed for a local server; set ``api_key_env`` for ollama.com or a server behind
    an authenticating proxy, and the key is sent as ``Authorization: Bearer``.
    """

    base_url: str = DEFAULT_BASE_URL
    #: ``keep_alive`` sent with every request: how long the model stays loaded
    #: ("5m", "1h", seconds as a number, -1 for ever, 0 to unload at once).
    keep_alive: str | int | float | None = None
    #: the context window to load the model with (``options.num_ctx``); Ollama's
    #: own default (often 2048-8192 tokens) applies when unset.
    num_ctx: int | None = None
    #: further model options sent in every request's ``options`` object
    #: (``top_k``, ``repeat_penalty``, ``num_gpu``...); request values win.
    model_options: dict[str, Any] = attrs.field(factory=dict)
    #: texts per ``/api/embed`` call.
    embedding_batch_size: int = 256
    #: ``truncate`` for ``/api/embed``: cut inputs that exceed the context window
    #: (Ollama's default, true) or fail with an error (false).
    truncate: bool | None = None

    def __attrs_post_init__(self) -> None:
        if self.embedding_batch_size < 1:
            raise ValueError("embedding_batch_size must be at least 1")
        if self.num_ctx is not None and self.num_ctx < 1:
            raise ValueError("num_ctx must be a positive number of tokens")
        if not self.base_url:
            raise ValueError("base_url must not be empty")
