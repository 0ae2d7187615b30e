"""llmkernel-tiktoken: token counting with tiktoken, labelled estimates elsewhere,
and context windows per model."""

from __future__ import annotations

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
