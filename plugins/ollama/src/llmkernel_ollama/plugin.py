"""llmkernel hooks for the ollama provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.provider import Provider, ProviderConfig

PROVIDER_TYPE = "ollama"


@hookimpl
def provide_chat(kernel: Any, config: ProviderConfig) -> Provider | None:
    """An :class:`~llmkernel_ollama.provider.OllamaProvider` for ``type = "ollama"``."""
    if config.type != PROVIDER_TYPE:
        return None
    from llmkernel_ollama.provider import OllamaProvider

    return OllamaProvider(config)
