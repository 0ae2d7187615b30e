"""llmkernel hooks for the gemini provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.provider import Provider, ProviderConfig

PROVIDER_TYPE = "gemini"


@hookimpl
def provide_chat(config: ProviderConfig) -> Provider | None:
    """A :class:`GeminiProvider` for ``type = "gemini"`` sections."""
    if config.type != PROVIDER_TYPE:
        return None
    from llmkernel_gemini.provider import GeminiProvider

    return GeminiProvider(config)
