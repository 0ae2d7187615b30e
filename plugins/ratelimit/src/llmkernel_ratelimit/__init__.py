"""llmkernel-ratelimit: requests and tokens per window, wait or reject, learned
from providers' headers.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_ratelimit.store": ["Claim", "LimitStore", "MemoryStore"],
        "llmkernel_ratelimit.settings": ["LimitRule", "RateLimitSettings"],
        "llmkernel_ratelimit.gate": ["RateLimitGate"],
        "llmkernel_ratelimit.headers": ["parse_headers"],
    },
)

if TYPE_CHECKING:
    from llmkernel_ratelimit.gate import RateLimitGate
    from llmkernel_ratelimit.headers import parse_headers
    from llmkernel_ratelimit.settings import LimitRule, RateLimitSettings
    from llmkernel_ratelimit.store import Claim, LimitStore, MemoryStore


__all__ = [
    "Claim",
    "LimitRule",
    "LimitStore",
    "MemoryStore",
    "RateLimitGate",
    "RateLimitSettings",
    "parse_headers",
]
