"""llmkernel-redis: shared state for several llmkernel instances through one Redis.

Names load on first use: importing the package (as the plugin entry point does)
imports nothing of redis-py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_redis.budgets": ["SharedBudgets"],
        "llmkernel_redis.breakers": ["SharedBreakers"],
        "llmkernel_redis.cache": ["SharedCache"],
        "llmkernel_redis.keystore": ["SharedKeys"],
        "llmkernel_redis.limits": ["SharedWindows", "WindowClaim"],
        "llmkernel_redis.link": ["RedisLink", "Unavailable"],
        "llmkernel_redis.scripts": ["Script"],
        "llmkernel_redis.settings": ["RedisSettings", "parse_settings"],
        "llmkernel_redis.shared": ["Shared", "shared_for"],
    },
)
if TYPE_CHECKING:
    from llmkernel_redis.breakers import SharedBreakers
    from llmkernel_redis.budgets import SharedBudgets
    from llmkernel_redis.cache import SharedCache
    from llmkernel_redis.keystore import SharedKeys
    from llmkernel_redis.limits import SharedWindows, WindowClaim
    from llmkernel_redis.link import RedisLink, Unavailable
    from llmkernel_redis.scripts import Script
    from llmkernel_redis.settings import RedisSettings, parse_settings
    from llmkernel_redis.shared import Shared, shared_for

__all__ = [
    "RedisLink",
    "RedisSettings",
    "Script",
    "Shared",
    "SharedBreakers",
    "SharedBudgets",
    "SharedCache",
    "SharedKeys",
    "SharedWindows",
    "Unavailable",
    "WindowClaim",
    "parse_settings",
    "shared_for",
]
