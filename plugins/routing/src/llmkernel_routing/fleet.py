"""Breakers shared by a fleet (``[redis]`` set, ``[plugin.routing] shared`` not
false): a deployment that failed on one instance is cooled down on all.

When a breaker of this instance opens, the opening is published to Redis
(``llmkernel_redis.breakers``: open for its cooldown, on Redis's clock; an
authentication lock for ``max_cooldown``), off the call's path. Every
``refresh`` seconds, while calls come, the instance reads the fleet's states of
the deployments its configuration defines and opens its own closed breaker of
each deployment open elsewhere, for what is left of that cooldown (its reason says
so). After the cooldown each instance half-opens its own breaker and sends its
own probe. When Redis is slow or gone, breakers work per instance until it is
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkernel_redis.breakers import SharedBreakers
    from llmkernel_routing.breaker import Breaker
    from llmkernel_routing.state import Routing

__all__ = ["FleetBreakers", "fleet_for"]

#: seconds between two reads of the fleet's breaker states
REFRESH = 1.0


class FleetBreakers:
    """One kernel's link between its breakers and the fleet's."""

    def __init__(self, shared: SharedBreakers, *, refresh: float = REFRESH) -> None:
        from llmkernel_redis.link import Unavailable

        self.shared = shared
        self.refresh = refresh
        self._unavailable = Unavailable
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.published = 0
        self.adopted = 0

    def started(self, routing: Routing) -> None:
        """At a call's attempt: the background read runs while the loop does."""
        task = self._task
        if task is not None and not task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self._follow(routing))

    def opened(self, key: str, breaker: Breaker) -> None:
        """This instance's breaker of ``key`` opened: tell the fleet."""
        seconds = breaker.cooldown
        if not math.isfinite(seconds):
            seconds = breaker.settings.max_cooldown
        if seconds <= 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._publish(key, seconds, breaker.reason))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, key: str, seconds: float, reason: str) -> None:
        with contextlib.suppress(self._unavailable):
            await self.shared.open(key, seconds, reason=reason, half_open=seconds)
            self.published += 1

    async def _follow(self, routing: Routing) -> None:
        while True:
            with contextlib.suppress(self._unavailable):
                await self.sync(routing)
            await asyncio.sleep(self.refresh)

    async def sync(self, routing: Routing) -> int:
        """Open this instance's closed breakers of deployments open in the fleet;
        how many were opened."""
        from llmkernel_routing.state import OTHER

        names = routing.names
        known = set(getattr(names, "deployments", ()) or ()) | set(routing.breakers)
        known.discard(OTHER)
        if not known:
            return 0
        states = await self.shared.states(sorted(known))
        now = routing.clock()
        opened = 0
        for key, state in states.items():
            if state.state != "open" or state.remaining <= 0:
                continue
            with routing.lock:
                breaker = routing.breaker_for(key)
                if breaker.current(now) != "closed":
                    continue
                breaker.adopt(now, state.remaining, f"open on another instance: {state.reason}")
            opened += 1
        self.adopted += opened
        return opened

    async def aclose(self) -> None:
        tasks = [t for t in (self._task, *self._pending) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, RuntimeError, self._unavailable):
                await task

    def stats(self) -> dict[str, Any]:
        return {"published": self.published, "adopted": self.adopted}


def fleet_for(kernel: Any) -> FleetBreakers | None:
    """The fleet's breakers of ``kernel`` (``[redis]`` set and not opted out)."""
    try:
        from llmkernel_redis.shared import shared_for
    except ImportError as exc:
        from llmkernel.errors import ConfigError

        raise ConfigError(
            "[redis] is set but llmkernel-redis is not installed: "
            "pip install 'llmkernel-routing[redis]', or set [plugin.routing] shared = false"
        ) from exc
    shared = shared_for(kernel, "routing")
    return FleetBreakers(shared.breakers()) if shared is not None else None
