"""``[plugin.otel]``: every key is optional."""

from __future__ import annotations

import attrs

__all__ = ["OtelSettings"]


@attrs.frozen(kw_only=True)
class OtelSettings:
    """``capture_content``: record prompts and answers as ``gen_ai.input.messages`` /
    ``gen_ai.output.messages`` (unset: as ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
    says; off when it is unset too). ``propagate``: the provider instances whose
    requests carry the W3C ``traceparent`` of their attempt (``"*"``: every HTTP
    provider); meant for OpenAI-compatible servers you run (vLLM, llama.cpp, another
    gateway), off by default so no trace id goes to a third party."""

    capture_content: bool | None = None
    propagate: list[str] = attrs.field(factory=list)

    def propagates_to(self, provider: str) -> bool:
        return "*" in self.propagate or provider in self.propagate
