"""llmkernel hooks for the bedrock provider (cheap to import: the provider module,
httpx and botocore are imported only when a ``bedrock`` instance is configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.provider import Provider, ProviderConfig

__all__ = ["PROVIDER_TYPE", "provide_chat"]

PROVIDER_TYPE = "bedrock"


@hookimpl
def provide_chat(config: ProviderConfig) -> Provider | None:
    """A :class:`~llmkernel_bedrock.provider.BedrockProvider` for ``type = "bedrock"``."""
    if config.type != PROVIDER_TYPE:
        return None
    from llmkernel_bedrock.provider import BedrockProvider

    return BedrockProvider(config)
