"""What the semantic layer asks of the kernel: embeddings through ``aembed`` (so
they are routed, retried, priced and in the ledger like any call), token counts,
and the optional verifier's chat call. The kernel is held weakly: the cache lives
in a table keyed by its kernel and must not keep it alive."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from llmkernel.types import ChatRequest

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

__all__ = ["VERIFY_PROMPT", "kernel_calls"]

VERIFY_PROMPT = (
    "Two requests to an assistant follow. Would one correct answer serve both, word "
    "for word? Differences in negation, numbers, units, names, dates, order or "
    "direction mean no. Reply with one word: yes or no.\n\nRequest A: {a}\n\nRequest B: {b}"
)


def _who(request: ChatRequest) -> dict[str, str]:
    """The caller's tenant and key, so the ledger bills the embedding to them."""
    return {k: str(v) for k, v in request.metadata.items() if k in ("tenant", "key")}


def kernel_calls(kernel: Kernel) -> dict[str, Any]:
    """``embed``, ``verify`` and ``count_tokens`` for
    :class:`~llmkernel_cache.cache.ResponseCache`, made on ``kernel``."""
    ref = weakref.ref(kernel)

    def alive() -> Kernel:
        found = ref()
        if found is None:
            raise RuntimeError("the kernel of this cache is gone")
        return found

    async def embed(model: str, text: str, request: ChatRequest) -> list[float]:
        answer = await alive().aembed(model, text, metadata=_who(request))
        return answer.vectors[0]

    async def verify(model: str, stored: str, asked: str, request: ChatRequest) -> bool:
        answer = await alive().achat(
            model,
            VERIFY_PROMPT.format(a=stored, b=asked),
            temperature=0,
            max_tokens=3,
            metadata=_who(request),
            cache=False,
        )
        return answer.text.strip().lower().startswith("yes")

    def count_tokens(request: ChatRequest, text: str) -> int:
        try:
            return int(alive().count_tokens(request.model, text).tokens)
        except Exception:  # an unknown model: a generous estimate
            return len(text) // 3 + 1

    return {"embed": embed, "verify": verify, "count_tokens": count_tokens}
