"""Context windows and output limits per model, as data with a source and a date.

Model ids change every few months: each row names where its numbers were read and
when (looked up 2026-11-30). Ids match exactly or by prefix (a dated snapshot such
as ``gpt-4o-2024-08-06`` takes the row of ``gpt-4o``); the longest prefix wins.
Unknown models have no limits (``None``), never a guess.
"""

from __future__ import annotations

import attrs

__all__ = ["LIMITS", "ModelLimits", "model_limits"]

LOOKED_UP = "2026-11-30"


@attrs.frozen(kw_only=True)
class ModelLimits:
    """``context_window`` counts input and output together; ``max_input_tokens`` is
    set when the provider caps input below it (GPT-5: 272,000 of 400,000)."""

    context_window: int
    max_output_tokens: int
    max_input_tokens: int | None = None
    source: str = ""
    date: str = LOOKED_UP

    @property
    def input_limit(self) -> int:
        """The most input tokens a request may have (with no room left for output)."""
        return self.max_input_tokens if self.max_input_tokens is not None else self.context_window


_SCRIPTBYAI = "https://www.scriptbyai.com/token-limit-openai-chatgpt (table updated 2025-10-17)"
_GPT5_INPUT = (
    "https://community.openai.com/t/huge-gpt-5-documentation-gap-flaw-causing-bugs-input-"
    "tokens-exceed-the-configured-limit-of-272-000-tokens/1344734"
)
_GPT41 = "https://contextwindows.dev/models/gpt-4-1"
_CLAUDE_4 = "https://docs.rs/mixtape-core/latest/src/mixtape_core/models/claude.rs.html"
_CLAUDE_45 = "https://github.com/labring/fastgpt-plugin/pull/242"
_OPUS_5 = "https://platform.claude.com/docs/en/models/opus-5/overview"
_GEMINI_25_PRO = (
    "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/gemini/2-5-pro"
)
_GEMINI_20 = "https://ai.google.dev/gemini-api/docs/models/gemini-2.0-flash"

# provider type -> model id (or prefix) -> limits
LIMITS: dict[str, dict[str, ModelLimits]] = {
    "openai": {
        "gpt-5": ModelLimits(
            context_window=400_000,
            max_output_tokens=128_000,
            max_input_tokens=272_000,
            source=f"{_SCRIPTBYAI}; input cap: {_GPT5_INPUT}",
        ),
        "gpt-4.1": ModelLimits(
            context_window=1_047_576, max_output_tokens=32_768, source=f"{_SCRIPTBYAI}; {_GPT41}"
        ),
        "gpt-4o": ModelLimits(context_window=128_000, max_output_tokens=16_384, source=_SCRIPTBYAI),
        "gpt-4o-mini": ModelLimits(
            context_window=128_000, max_output_tokens=16_384, source=_SCRIPTBYAI
        ),
        "o1": ModelLimits(context_window=200_000, max_output_tokens=100_000, source=_SCRIPTBYAI),
        "o3": ModelLimits(context_window=200_000, max_output_tokens=100_000, source=_SCRIPTBYAI),
        "o4-mini": ModelLimits(
            context_window=200_000, max_output_tokens=100_000, source=_SCRIPTBYAI
        ),
    },
    "anthropic": {
        "claude-opus-4-1": ModelLimits(
            context_window=200_000, max_output_tokens=32_000, source=_CLAUDE_4
        ),
        "claude-3-7-sonnet": ModelLimits(
            context_window=200_000, max_output_tokens=64_000, source=_CLAUDE_4
        ),
        "claude-sonnet-4-5": ModelLimits(
            context_window=200_000, max_output_tokens=64_000, source=_CLAUDE_45
        ),
        "claude-haiku-4-5": ModelLimits(
            context_window=200_000, max_output_tokens=64_000, source=_CLAUDE_45
        ),
        "claude-opus-5": ModelLimits(
            context_window=1_000_000, max_output_tokens=128_000, source=_OPUS_5
        ),
    },
    "gemini": {
        "gemini-2.5-pro": ModelLimits(
            context_window=1_048_576,
            max_output_tokens=65_535,
            source=_GEMINI_25_PRO,
        ),
        "gemini-2.0-flash": ModelLimits(
            context_window=1_048_576,
            max_output_tokens=8_192,
            source=_GEMINI_20,
        ),
    },
}
LIMITS["azure"] = LIMITS["openai"]


def model_limits(provider_type: str, model: str) -> ModelLimits | None:
    """The limits of ``model`` served by ``provider_type``, or ``None`` when unknown."""
    table = LIMITS.get(provider_type)
    if not table:
        return None
    name = model.rsplit("/", 1)[-1]
    if name in table:
        return table[name]
    best = max((p for p in table if name.startswith(p + "-")), key=len, default=None)
    return table[best] if best is not None else None
