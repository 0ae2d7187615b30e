"""Well-known Gemini models and what they can do."""

from __future__ import annotations

from llmkernel.types import Capabilities
from llmkernel_http import capabilities_by_prefix

_CHAT_WINDOW = 1_048_576

_CHAT_25 = Capabilities(
    tools=True,
    images=True,
    documents=True,  # PDFs (ai.google.dev/gemini-api/docs/document-processing, 2026-12-07)
    json_schema=True,
    reasoning=True,
    context_window=_CHAT_WINDOW,
    max_output_tokens=65_536,
)
_CHAT_20 = Capabilities(
    tools=True,
    images=True,
    documents=True,  # PDFs (ai.google.dev/gemini-api/docs/document-processing, 2026-12-07)
    json_schema=True,
    reasoning=False,
    context_window=_CHAT_WINDOW,
    max_output_tokens=8_192,
)

KNOWN_MODELS: dict[str, Capabilities] = {
    "gemini-2.5-pro": _CHAT_25,
    "gemini-2.5-flash": _CHAT_25,
    "gemini-2.5-flash-lite": _CHAT_25,
    "gemini-2.0-flash": _CHAT_20,
    "text-embedding-004": Capabilities(
        tools=False, embeddings=True, context_window=2_048, max_output_tokens=None
    ),
    "gemini-embedding-001": Capabilities(
        tools=False, embeddings=True, context_window=2_048, max_output_tokens=None
    ),
}


def bare_model_id(model: str) -> str:
    """``models/gemini-2.5-flash`` -> ``gemini-2.5-flash``."""
    return model.removeprefix("models/")


def capabilities_for(model: str) -> Capabilities | None:
    """The table entry for ``model``, matching dated or preview variants by prefix
    (``gemini-2.5-flash-preview-05-20`` is a ``gemini-2.5-flash``)."""
    return capabilities_by_prefix(KNOWN_MODELS, bare_model_id(model))
