"""llmkernel hooks for the anthropic provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.provider import Provider, ProviderConfig

PROVIDER_TYPE = "anthropic"


@hookimpl
def provide_chat(kernel: Any, config: ProviderConfig) -> Provider | None:
    """An :class:`~llmkernel_anthropic.provider.AnthropicProvider` for
    ``type = "anthropic"`` sections."""
    if config.type != PROVIDER_TYPE:
        return None
    from llmkernel_anthropic.provider import AnthropicProvider

    return AnthropicProvider(config)
