"""The counter the plugin's ``count_tokens`` hook uses, one per kernel."""

from __future__ import annotations

from llmkernel import log
from llmkernel.types import ChatRequest, EmbeddingRequest, TokenCount
from llmkernel_tiktoken.counter import CL100K_TOOLS, O200K_TOOLS, count_chat, estimate_chat
from llmkernel_tiktoken.encodings import Encodings, encoding_name
from llmkernel_tiktoken.settings import TiktokenSettings

__all__ = ["OPENAI_TYPES", "TokenCounter"]

OPENAI_TYPES = frozenset({"openai", "azure"})
_LABELS = {
    "anthropic": " (Anthropic's tokenizer is not public; its count_tokens endpoint is exact)",
    "gemini": " (Gemini's docs: about 4 characters a token; its countTokens endpoint is exact)",
}


class TokenCounter:
    """Counts with tiktoken where the model's encoding is known and on disk, and
    says so when it falls back (a warning, once per encoding)."""

    def __init__(self, settings: TiktokenSettings, encodings: Encodings | None = None) -> None:
        self.settings = settings
        self.encodings = encodings or Encodings(settings.encodings_dir)
        self._warned: set[str] = set()

    def count(
        self, request: ChatRequest | EmbeddingRequest, provider_type: str, model: str
    ) -> TokenCount | None:
        name = encoding_name(model) if provider_type in OPENAI_TYPES else None
        if isinstance(request, EmbeddingRequest):
            return self._count_inputs(request, name)
        if name is not None:
            encoding = self.encodings.get(name)
            if encoding is not None:
                tools = CL100K_TOOLS if name == "cl100k_base" else O200K_TOOLS
                return count_chat(request, encoding, tools=tools)
            self._warn_missing(name)
            return estimate_chat(
                request, encoding=None, label=f" ({name} encoding files not found offline)"
            )
        if provider_type in _LABELS and self.settings.estimate_other_providers:
            encoding = None if provider_type == "gemini" else self.encodings.get("o200k_base")
            return estimate_chat(request, encoding=encoding, label=_LABELS[provider_type])
        return None

    def _count_inputs(self, request: EmbeddingRequest, name: str | None) -> TokenCount | None:
        """An embedding request's inputs: exact with the model's encoding, else left
        to the kernel's estimate."""
        encoding = self.encodings.get(name) if name is not None else None
        if encoding is None:
            if name is not None:
                self._warn_missing(name)
            return None
        tokens = sum(len(encoding.encode_ordinary(text)) for text in request.inputs)
        return TokenCount(tokens=tokens, exact=True, method=f"tiktoken {encoding.name}")

    def _warn_missing(self, name: str) -> None:
        if name in self._warned:
            return
        self._warned.add(name)
        where = ", ".join(str(d) for d in self.encodings.directories()) or "none configured"
        # info, not warning: every count says exact=False, `llmkernel tokens` prints
        # "estimate", and a CLI chat must not print this on every run
        log.info(
            "llmkernel_tiktoken.encoding_missing",
            encoding=name,
            searched=where,
            note=(
                "token counts are estimates (exact=False): put the encoding file in "
                "TIKTOKEN_CACHE_DIR or [plugin.tiktoken] encodings_dir"
            ),
        )
