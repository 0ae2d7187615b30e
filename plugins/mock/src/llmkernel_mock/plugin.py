"""llmkernel hooks for the mock provider."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from llmkernel import hookimpl
from llmkernel.types import ModelPrice

if TYPE_CHECKING:
    from llmkernel.provider import Provider, ProviderConfig

_FREE = ModelPrice(input=Decimal(0), output=Decimal(0), source="mock: simulated, free")


@hookimpl
def provide_chat(config: ProviderConfig) -> Provider | None:
    if config.type != "mock":
        return None
    from llmkernel_mock.provider import MockProvider

    return MockProvider(config)


@hookimpl
def price_model(provider_type: str) -> ModelPrice | None:
    """Simulated calls cost nothing, and say so: priced at zero, not unpriced."""
    return _FREE if provider_type == "mock" else None
