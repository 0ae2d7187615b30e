"""llmkernel-tiktoken: token counting with tiktoken, labelled estimates elsewhere,
and context windows per model.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_tiktoken.encodings": ["Encodings", "encoding_name"],
        "llmkernel_tiktoken.limits": ["ModelLimits", "model_limits"],
        "llmkernel_tiktoken.api": ["acount_tokens"],
        "llmkernel_tiktoken.counter": ["count_chat", "estimate_chat", "image_tokens"],
    },
)

if TYPE_CHECKING:
    from llmkernel_tiktoken.api import acount_tokens
    from llmkernel_tiktoken.counter import count_chat, estimate_chat, image_tokens
    from llmkernel_tiktoken.encodings import Encodings, encoding_name
    from llmkernel_tiktoken.limits import ModelLimits, model_limits


__all__ = [
    "Encodings",
    "ModelLimits",
    "acount_tokens",
    "count_chat",
    "encoding_name",
    "estimate_chat",
    "image_tokens",
    "model_limits",
]
