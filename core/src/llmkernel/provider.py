"""What a provider plugin returns from ``provide_chat``: a :class:`Provider`.

A provider instance serves one ``[providers.NAME]`` section. Its methods are async
and do the I/O; the hook that creates it is sync and cheap. Subclass
:class:`Provider` and override what the provider supports; the defaults say clearly
that a capability is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel.errors import InvalidRequestError
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Health,
    ModelInfo,
    Response,
    StreamEvent,
    TokenCount,
)

if TYPE_CHECKING:
    from llmkernel.lifecycle import Lifecycle


@attrs.frozen(kw_only=True)
class ProviderConfig:
    """One provider instance from config: ``[providers.<name>]`` with ``type = "<type>"``.

    ``options`` is the rest of the table, for the plugin to read with
    :func:`llmkernel.options.parse_options`. ``where`` names the table and file for
    error messages. ``transport`` (if set) is the transport an HTTP provider builds its
    client on (from the ``provide_transport`` hook); ``lifecycle`` is the kernel's
    :class:`~llmkernel.lifecycle.Lifecycle`, for exit and fork hooks.
    """

    name: str
    type: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    where: str = ""
    transport: Any = None
    lifecycle: Lifecycle | None = None


class Provider:
    """Base class for provider instances. ``name`` is the instance name (the prefix
    of ``name/model``); ``type`` is the provider type (``openai``, ``anthropic``...).
    """

    name: str
    type: str
    #: Seconds within which the provider itself ends every call (its own total
    #: timeout), or ``None``. When set and it fits the call's remaining deadline, the
    #: kernel adds no deadline timer of its own: one timer a call, not two.
    call_timeout: float | None = None

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self.type = config.type

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} type={self.type!r}>"

    async def chat(self, request: ChatRequest) -> Response:
        """Answer ``request`` (whose ``model`` is this provider's model id)."""
        raise NotImplementedError

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Yield stream events as the bytes arrive; write it as an ``async def`` generator.

        Yield :class:`~llmkernel.types.UsageEvent` and
        :class:`~llmkernel.types.FinishEvent` when the provider reports them; the
        kernel folds them into the final response. Raise a
        :class:`~llmkernel.errors.ProviderError` on failure, before or mid-stream.
        """
        raise NotImplementedError

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        raise InvalidRequestError(
            "this provider does not offer embeddings", provider=self.name, model=request.model
        )

    async def list_models(self) -> list[ModelInfo]:
        """The models the provider serves, asked of it over the network."""
        return []

    def declared_models(self) -> list[str]:
        """Models known without a network call (from config or the plugin's data)."""
        return []

    def capabilities(self, model: str) -> Capabilities | None:
        """What ``model`` can do, or ``None`` when unknown."""
        return None

    async def health(self) -> Health:
        """A cheap check that the provider answers and accepts our credentials."""
        return Health(ok=True, detail="no health check")

    async def count_tokens(self, request: ChatRequest) -> TokenCount | None:
        """The provider's own count of ``request``'s input tokens (its ``model`` is
        this provider's model id), from an endpoint that counts without generating
        (Anthropic's ``count_tokens``, Gemini's ``countTokens``), or ``None`` when
        the provider has none: callers then use the kernel's local count
        (:meth:`llmkernel.models.Models.count`). Raise a
        :class:`~llmkernel.errors.ProviderError` when the endpoint fails."""
        return None

    async def aclose(self) -> None:
        """Close network clients; called once when the kernel closes."""
