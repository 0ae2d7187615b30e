"""llmkernel hooks for the openai provider (cheap to import: the provider module is
imported only when an ``openai`` instance is configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.provider import Provider, ProviderConfig


@hookimpl
def provide_chat(config: ProviderConfig) -> Provider | None:
    if config.type != "openai":
        return None
    from llmkernel_openai.provider import OpenAIProvider

    return OpenAIProvider(config)
