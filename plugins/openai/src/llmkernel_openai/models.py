"""Well-known OpenAI models and what they can do."""

from __future__ import annotations

import re

from llmkernel.types import Capabilities
from llmkernel_http import capabilities_by_prefix

#: ``documents``: PDF file inputs, which Chat Completions takes on the models with
#: vision ("gpt-4o and later"; developers.openai.com/api/docs/guides/file-inputs,
#: read 2026-12-07)
KNOWN_MODELS: dict[str, Capabilities] = {
    "gpt-4o": Capabilities(
        tools=True,
        images=True,
        documents=True,
        json_schema=True,
        context_window=128_000,
        max_output_tokens=16_384,
    ),
    "gpt-4o-mini": Capabilities(
        tools=True,
        images=True,
        documents=True,
        json_schema=True,
        context_window=128_000,
        max_output_tokens=16_384,
    ),
    "gpt-4.1": Capabilities(
        tools=True,
        images=True,
        documents=True,
        json_schema=True,
        context_window=1_047_576,
        max_output_tokens=32_768,
    ),
    "gpt-4.1-mini": Capabilities(
        tools=True,
        images=True,
        documents=True,
        json_schema=True,
        context_window=1_047_576,
        max_output_tokens=32_768,
    ),
    "o3": Capabilities(
        tools=True,
        images=True,
        documents=True,
        json_schema=True,
        reasoning=True,
        context_window=200_000,
        max_output_tokens=100_000,
    ),
    "o3-mini": Capabilities(
        tools=True,
        images=False,
        json_schema=True,
        reasoning=True,
        context_window=200_000,
        max_output_tokens=100_000,
    ),
    "o4-mini": Capabilities(
        tools=True,
        images=True,
        documents=True,
        json_schema=True,
        reasoning=True,
        context_window=200_000,
        max_output_tokens=100_000,
    ),
    "gpt-5": Capabilities(
        tools=True,
        images=True,
        documents=True,
        json_schema=True,
        reasoning=True,
        context_window=400_000,
        max_output_tokens=128_000,
    ),
    "gpt-5-mini": Capabilities(
        tools=True,
        images=True,
        documents=True,
        json_schema=True,
        reasoning=True,
        context_window=400_000,
        max_output_tokens=128_000,
    ),
    "text-embedding-3-small": Capabilities(tools=False, embeddings=True, context_window=8_191),
    "text-embedding-3-large": Capabilities(tools=False, embeddings=True, context_window=8_191),
}

# o1, o3, o4-mini, gpt-5... also behind a router prefix such as "openai/o3".
_REASONING = re.compile(r"^(?:[\w.-]+/)?(?:o[1-9](?:-|$)|gpt-5)")


def capabilities_for(model: str) -> Capabilities | None:
    """The capabilities of ``model``, matching dated snapshots (``gpt-4o-2024-08-06``)
    to their family by the longest known prefix."""
    name = model.rsplit("/", 1)[-1] if model.startswith("openai/") else model
    return capabilities_by_prefix(KNOWN_MODELS, name)


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` is an OpenAI reasoning model (wants ``max_completion_tokens``)."""
    return bool(_REASONING.match(model))
