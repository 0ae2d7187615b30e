"""llmkernel-ratelimit: requests and tokens per window, wait or reject, learned
from providers' headers.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Claim": "llmkernel_ratelimit.store",
    "LimitRule": "llmkernel_ratelimit.settings",
    "LimitStore": "llmkernel_ratelimit.store",
    "MemoryStore": "llmkernel_ratelimit.store",
    "RateLimitGate": "llmkernel_ratelimit.gate",
    "RateLimitSettings": "llmkernel_ratelimit.settings",
    "parse_headers": "llmkernel_ratelimit.headers",
}

if TYPE_CHECKING:
    from llmkernel_ratelimit.gate import RateLimitGate
    from llmkernel_ratelimit.headers import parse_headers
    from llmkernel_ratelimit.settings import LimitRule, RateLimitSettings
    from llmkernel_ratelimit.store import Claim, LimitStore, MemoryStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Claim",
    "LimitRule",
    "LimitStore",
    "MemoryStore",
    "RateLimitGate",
    "RateLimitSettings",
    "parse_headers",
]
