"""Counting with the providers' own endpoints when configured (async: they are
network calls), else the local count."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from llmkernel.types import Message, TokenCount, replace

if TYPE_CHECKING:
    import httpx

    from llmkernel.kernel import Kernel

__all__ = ["acount_tokens"]


async def acount_tokens(
    kernel: Kernel,
    model: str | None = None,
    messages: Iterable[Message | Mapping[str, Any]] | str = (),
    *,
    client: httpx.AsyncClient | None = None,
    **kwargs: Any,
) -> TokenCount:
    """Input tokens of a request for ``model``'s first candidate: from the provider's
    counting endpoint when ``[plugin.tiktoken] remote`` lists its type, else
    ``kernel.count_tokens``."""
    from llmkernel_tiktoken.plugin import counter_of

    request = kernel.build_request(model, messages, **kwargs)
    candidate = kernel.models.resolve(request.model)[0]
    settings = counter_of(kernel).settings
    kind = candidate.provider_type
    if kind not in settings.remote:
        return kernel.count_tokens(model, messages, **kwargs)
    from llmkernel.errors import ConfigError
    from llmkernel_tiktoken import remote

    env = settings.anthropic_api_key_env if kind == "anthropic" else settings.gemini_api_key_env
    api_key = os.environ.get(env)
    if not api_key:
        raise ConfigError(
            f"[plugin.tiktoken] remote counting for {kind} needs an API key in ${env}"
        )
    routed = replace(request, model=candidate.model)
    if kind == "anthropic":
        return await remote.count_anthropic(
            routed,
            model=candidate.model,
            api_key=api_key,
            base_url=settings.anthropic_base_url,
            client=client,
        )
    return await remote.count_gemini(
        routed,
        model=candidate.model,
        api_key=api_key,
        base_url=settings.gemini_base_url,
        client=client,
    )
