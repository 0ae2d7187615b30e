"""llmkernel hooks for the azure provider (cheap to import: the provider module,
llmkernel-openai's modules and azure-identity are imported only when an ``azure``
instance is configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.provider import Provider, ProviderConfig

__all__ = ["PROVIDER_TYPE", "provide_chat"]

PROVIDER_TYPE = "azure"


@hookimpl
def provide_chat(config: ProviderConfig) -> Provider | None:
    """An :class:`~llmkernel_azure.provider.AzureProvider` for ``type = "azure"``."""
    if config.type != PROVIDER_TYPE:
        return None
    from llmkernel_azure.provider import AzureProvider

    return AzureProvider(config)
