"""The response cache protocol, as returned by a ``provide_cache`` plugin."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from llmkernel.types import ChatRequest, Response


@runtime_checkable
class Cache(Protocol):
    """A response cache. The key is the cache's business: it must cover every
    parameter that changes the answer and no secret."""

    async def lookup(self, request: ChatRequest) -> Response | None:
        """The stored response for ``request``, or ``None``."""
        ...

    async def store(self, request: ChatRequest, response: Response) -> None:
        """Keep ``response`` (final, with usage and cost) for ``request``."""
        ...
