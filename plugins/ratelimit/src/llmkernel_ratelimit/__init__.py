"""llmkernel-ratelimit: requests and tokens per window, wait or reject, learned
from providers' headers."""

from __future__ import annotations

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
