"""The shared store of one kernel, and the helper every stateful plugin calls.

``shared_for(kernel, "ratelimit")`` is the shared store for that plugin, or
``None``: without ``[redis]`` (then nothing of redis is imported), or when the
plugin opted out (``[plugin.ratelimit] shared = false``). One :class:`Shared` per
kernel: made at the first ask, closed with the kernel (``kernel.add_closer``),
forgotten in a forked child (``kernel.on_fork``).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from llmkernel_redis.settings import RedisSettings, parse_settings

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_redis.breakers import SharedBreakers
    from llmkernel_redis.budgets import SharedBudgets
    from llmkernel_redis.cache import SharedCache
    from llmkernel_redis.keystore import SharedKeys
    from llmkernel_redis.limits import SharedWindows
    from llmkernel_redis.link import RedisLink

__all__ = ["Shared", "shared_for"]

_SHARED: weakref.WeakKeyDictionary[Any, Shared] = weakref.WeakKeyDictionary()


def shared_for(kernel: Kernel, plugin: str | None = None) -> Shared | None:
    """The kernel's shared store for ``plugin``, or ``None`` when ``[redis]`` is not
    set or ``[plugin.<plugin>] shared = false``."""
    config = kernel.config
    if not config.redis:
        return None
    if plugin is not None and config.plugin_settings(plugin).get("shared", True) is False:
        return None
    found = _SHARED.get(kernel)
    if found is None:
        found = _SHARED[kernel] = Shared(parse_settings(config.redis, source=config.source))
        kernel.lifecycle.add_closer(found.aclose)
        kernel.lifecycle.on_fork(found.forget)
    return found


class Shared:
    """The links to Redis (``main``, and ``cache`` on ``cache_url``) and the typed
    views plugins use. Making one does no I/O."""

    def __init__(self, settings: RedisSettings) -> None:
        from llmkernel_redis.link import RedisLink

        self.settings = settings

        def link(url: str, name: str) -> RedisLink:
            return RedisLink(
                url,
                name=name,
                timeout=settings.timeout,
                connect_timeout=settings.connect_timeout,
                pool_size=settings.pool_size,
                retry_interval=settings.retry_interval,
            )

        self.main = link(settings.url, "main")
        self.cache = link(settings.cache_url, "cache") if settings.cache_url else self.main
        self._views: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Shared {self.settings!r}>"

    @property
    def prefix(self) -> str:
        return self.settings.key_prefix

    @property
    def instances(self) -> int:
        return self.settings.instances

    @property
    def fail_closed(self) -> bool:
        return self.settings.fail_closed

    def _view(self, name: str, make: Any) -> Any:
        found = self._views.get(name)
        if found is None:
            found = self._views[name] = make()
        return found

    def windows(self) -> SharedWindows:
        """Rate-limit windows (``llmkernel.ratelimit`` script) on the main link."""
        from llmkernel_redis.limits import SharedWindows

        found: SharedWindows = self._view("windows", lambda: SharedWindows(self.main, self.prefix))
        return found

    def budgets(self) -> SharedBudgets:
        """Budget counters, reservations and slab leases on the main link."""
        from llmkernel_redis.budgets import SharedBudgets

        found: SharedBudgets = self._view("budgets", lambda: SharedBudgets(self.main, self.prefix))
        return found

    def cache_entries(self) -> SharedCache:
        """Exact-cache entries on the cache link."""
        from llmkernel_redis.cache import SharedCache

        found: SharedCache = self._view("cache", lambda: SharedCache(self.cache, self.prefix))
        return found

    def keys(self) -> SharedKeys:
        """The gateway's key records on the main link."""
        from llmkernel_redis.keystore import SharedKeys

        found: SharedKeys = self._view("keys", lambda: SharedKeys(self.main, self.prefix))
        return found

    def breakers(self) -> SharedBreakers:
        """Breaker states and health results on the main link."""
        from llmkernel_redis.breakers import SharedBreakers

        found: SharedBreakers = self._view(
            "breakers", lambda: SharedBreakers(self.main, self.prefix)
        )
        return found

    def links(self) -> list[RedisLink]:
        return [self.main] if self.cache is self.main else [self.main, self.cache]

    def stats(self) -> dict[str, Any]:
        """``{"state": "ok" | "degraded", "since", "reason", ...}`` of the main link,
        the cache link's under ``"cache"`` when it has its own URL."""
        out = self.main.stats()
        out["instances"] = self.settings.instances
        out["fail_closed"] = self.settings.fail_closed
        if self.cache is not self.main:
            out["cache"] = self.cache.stats()
        return out

    async def aclose(self) -> None:
        for link in self.links():
            await link.aclose()

    def forget(self) -> None:
        for link in self.links():
            link.forget()
