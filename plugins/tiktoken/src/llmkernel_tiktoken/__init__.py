"""llmkernel-tiktoken: token counting with tiktoken, labelled estimates elsewhere,
and context windows per model.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Encodings": "llmkernel_tiktoken.encodings",
    "ModelLimits": "llmkernel_tiktoken.limits",
    "acount_tokens": "llmkernel_tiktoken.api",
    "count_chat": "llmkernel_tiktoken.counter",
    "encoding_name": "llmkernel_tiktoken.encodings",
    "estimate_chat": "llmkernel_tiktoken.counter",
    "image_tokens": "llmkernel_tiktoken.counter",
    "model_limits": "llmkernel_tiktoken.limits",
}

if TYPE_CHECKING:
    from llmkernel_tiktoken.api import acount_tokens
    from llmkernel_tiktoken.counter import count_chat, estimate_chat, image_tokens
    from llmkernel_tiktoken.encodings import Encodings, encoding_name
    from llmkernel_tiktoken.limits import ModelLimits, model_limits


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
