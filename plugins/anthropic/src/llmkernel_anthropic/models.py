"""Well-known Claude models and what they can do, without a network call."""

from __future__ import annotations

from llmkernel.types import Capabilities
from llmkernel_http import capabilities_by_prefix

_CONTEXT = 200_000


def _claude(max_output: int, *, reasoning: bool) -> Capabilities:
    return Capabilities(
        tools=True,
        images=True,
        # PDF ``document`` blocks: "All active models support PDF processing"
        # (platform.claude.com/docs/en/build-with-claude/pdf-support, read 2026-12-07)
        documents=True,
        json_schema=True,  # by forced tool use
        reasoning=reasoning,
        embeddings=False,
        context_window=_CONTEXT,
        max_output_tokens=max_output,
    )


#: model id (or alias prefix) -> capabilities. Dated ids such as
#: ``claude-sonnet-4-5-20250929`` match their alias by prefix.
KNOWN_MODELS: dict[str, Capabilities] = {
    "claude-opus-4-1": _claude(32_000, reasoning=True),
    "claude-opus-4": _claude(32_000, reasoning=True),
    "claude-sonnet-4-5": _claude(64_000, reasoning=True),
    "claude-sonnet-4": _claude(64_000, reasoning=True),
    "claude-haiku-4-5": _claude(64_000, reasoning=True),
    "claude-3-7-sonnet": _claude(64_000, reasoning=True),
    "claude-3-5-haiku": _claude(8_192, reasoning=False),
}


def capabilities_for(model: str) -> Capabilities | None:
    """The capabilities of ``model``: an exact alias, or the longest alias that is a
    ``-``-separated prefix of it (``claude-opus-4-1-20250805`` is ``claude-opus-4-1``,
    not ``claude-opus-4``)."""
    return capabilities_by_prefix(KNOWN_MODELS, model.strip().lower())
