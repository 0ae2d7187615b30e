"""Breakers and health shared by a fleet (``[redis]`` set, ``[plugin.routing]
shared`` not false): a deployment that failed on one instance is cooled down on
all, and one instance of the fleet sends its half-open probe.

- **Openings.** When a breaker of this instance opens, the opening is published to
  Redis (``llmkernel_redis.breakers``: open for its cooldown, on Redis's clock; an
  authentication lock for ``max_cooldown``), off the call's path.
- **Following.** Every ``refresh`` seconds, while calls come, the instance reads in
  one round trip the fleet's states of the deployments its configuration defines
  and the fleet's health-check results of its providers. A deployment open in the
  fleet opens this instance's closed (or half-open, waiting) breaker for what is
  left of that cooldown (its reason says so); one half-open in the fleet makes a
  closed breaker here half-open too; one closed in the fleet, with no probe
  claimed, closes a half-open breaker here that is not sending a probe of its own
  (the fleet's succeeded). A breaker waiting for another instance's probe stops
  waiting when the fleet shows no claim any more (given back, or expired).
- **One probe.** When a breaker here turns half-open, the call that would send the
  probe first claims it in Redis (``claim_probe``, one round trip, only then). The
  instance that wins sends it, renewing its claim while the call runs; the others
  skip the deployment (``probe in flight on another instance``) until the result
  is published (a success closes the fleet's breaker, a failure opens it again
  with the grown cooldown). A claim not renewed expires after ``probe_timeout``
  seconds, and another instance may claim it: a holder that died blocks nobody
  for longer.
- **Health.** Each round of active health checks is published (a TTL of three
  rounds, so a stopped checker's results fade); a result newer than this
  instance's own takes its place: the filter and ``kernel.stats()`` (hence the
  gateway's ``/health``) use the fleet's newest result, with the instance that got
  it (``by``).

When Redis is slow or gone, every step falls back to this instance's own state
(an unanswered claim lets this instance probe) until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from llmkernel import log

if TYPE_CHECKING:
    from llmkernel_redis.breakers import FleetView, SharedBreakers
    from llmkernel_routing.breaker import Breaker
    from llmkernel_routing.state import HealthResult, Routing

__all__ = ["FleetBreakers", "fleet_for"]

#: seconds between two reads of the fleet's breaker states
REFRESH = 1.0
#: seconds a close waits for the follower and the publishing tasks to end
CLOSE_WAIT = 2.0


class FleetBreakers:
    """One kernel's link between its breakers and health results and the fleet's."""

    def __init__(self, shared: SharedBreakers, *, refresh: float = REFRESH) -> None:
        from llmkernel_redis.link import Unavailable

        self.shared = shared
        self.refresh = refresh
        self._unavailable = Unavailable
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self._closing = False
        #: the fleet's state per deployment at the last read, and when (monotonic)
        self.view: dict[str, FleetView] = {}
        self.read_at: float | None = None
        #: per deployment this instance changed in the fleet: publishes under way,
        #: and how many ended (a read begun before one ended does not undo it)
        self._publishing: dict[str, int] = {}
        self._published: dict[str, int] = {}
        self.published = 0
        self.adopted = 0
        self.probes_won = 0
        self.probes_lost = 0

    @property
    def owner(self) -> str:
        """This instance's name in what it publishes."""
        return self.shared.owner

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

    # ------------------------------------------------------------------ publishing

    def _background(self, work: Callable[[], Awaitable[Any]], key: str = "") -> None:
        """``await work()`` in a task of the running loop (Redis unavailable: left
        undone); ``key``: the deployment whose fleet state it changes."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if key:
            self._publishing[key] = self._publishing.get(key, 0) + 1

        async def run() -> None:
            try:
                with contextlib.suppress(self._unavailable):
                    await work()
            finally:
                if key:
                    self._publishing[key] -= 1
                    self._published[key] = self._published.get(key, 0) + 1

        task = loop.create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def opened(self, key: str, breaker: Breaker) -> None:
        """This instance's breaker of ``key`` opened: tell the fleet (a claim on its
        probe is over)."""
        seconds = breaker.cooldown
        if not math.isfinite(seconds):
            seconds = breaker.settings.max_cooldown
        if seconds <= 0:
            return
        # kept past the cooldown while the fleet may wait for a probe's result
        half_open = seconds + 2 * breaker.settings.probe_timeout
        reason = breaker.reason

        async def publish() -> None:
            await self.shared.open(key, seconds, reason=reason, half_open=half_open)
            self.published += 1

        self._background(publish, key)

    def closed(self, key: str) -> None:
        """This instance's probe of ``key`` succeeded: closed for the fleet."""
        self._background(lambda: self.shared.close(key), key)

    def released(self, key: str) -> None:
        """This instance's probe of ``key`` was not sent (refused further on, or
        ended without a verdict): give the claim back."""
        self._background(lambda: self.shared.release_probe(key))

    def health_checked(self, results: Mapping[str, HealthResult], ttl: float) -> None:
        """A round of this instance's active health checks ended: its own results
        are kept in the fleet for ``ttl`` seconds."""
        own = {name: (r.ok, r.detail) for name, r in results.items() if not r.by}
        if own:
            self._background(lambda: self.shared.put_healths(own, ttl=ttl))

    async def claim(
        self, key: str, seconds: float, probing: Callable[[], bool] | None = None
    ) -> bool:
        """Whether this instance sends ``key``'s half-open probe (Redis unavailable:
        yes, as without a fleet). A won claim is renewed every third of ``seconds``
        while ``probing()`` (the probe's call runs), so a long call keeps it and a
        holder that died keeps it ``seconds`` at most."""
        try:
            won = await self.shared.claim_probe(key, seconds)
        except self._unavailable:
            return True
        if not won:
            self.probes_lost += 1
            return False
        self.probes_won += 1
        if probing is None:
            return True

        async def renew() -> None:
            while True:
                await asyncio.sleep(seconds / 3)
                if not probing():
                    return
                with contextlib.suppress(self._unavailable):
                    if not await self.shared.renew_probe(key, seconds):
                        return  # expired meanwhile, or a result ended it

        self._background(renew)
        return True

    # ------------------------------------------------------------------ following

    async def _follow(self, routing: Routing) -> None:
        while not self._closing:
            with contextlib.suppress(self._unavailable):
                await self.sync(routing)
            await asyncio.sleep(self.refresh)

    async def sync(self, routing: Routing) -> int:
        """Read the fleet's states and health results, and follow them; how many
        breakers of this instance the fleet opened."""
        from llmkernel_routing.state import OTHER

        names = routing.names
        known = set(getattr(names, "deployments", ()) or ()) | set(routing.breakers)
        known.discard(OTHER)
        providers = sorted({key.partition("/")[0] for key in known} | set(routing.health))
        if not known and not providers:
            return 0
        before = dict(self._published)
        states, health = await self.shared.view(sorted(known), providers)
        now = routing.clock()
        self.view, self.read_at = states, now
        opened = 0
        with routing.lock:
            for key, state in states.items():
                if self._publishing.get(key) or self._published.get(key) != before.get(key):
                    continue  # changed here while the read was under way
                breaker = routing.breaker_for(key)
                was = breaker.current(now)
                opened += self._follow_one(breaker, state, now)
                if breaker.state != was:
                    log.info(
                        "routing.breaker.followed",
                        deployment=key,
                        state=breaker.state,
                        reason=breaker.reason,
                        by=state.by,
                    )
            self._merge_health(routing, health, now)
        self.adopted += opened
        return opened

    @staticmethod
    def _follow_one(breaker: Breaker, state: FleetView, now: float) -> int:
        local = breaker.current(now)
        waiting = local == "half_open" and (bool(breaker.elsewhere) or not breaker.probe)
        if state.state == "open" and state.remaining > 0:
            if local == "closed" or waiting:
                breaker.adopt(now, state.remaining, f"open on another instance: {state.reason}")
                return 1
        elif state.state == "half_open":
            if local == "closed":
                breaker.follow_half_open(f"half-open on another instance: {state.reason}")
            elif breaker.elsewhere and not state.probe:
                breaker.stop_waiting()  # the claim was given back or expired: ours may go
        elif waiting and not state.probe:
            # the fleet's probe succeeded (a record that expired while a claim is
            # still renewed means a long probe runs: wait for it)
            breaker.follow_close()
        return 0

    def _merge_health(
        self, routing: Routing, results: Mapping[str, Mapping[str, Any]], now: float
    ) -> None:
        from llmkernel_routing.state import HealthResult

        wall = routing.wall()
        # a new dict, swapped in whole: a snapshot taken from another thread never
        # sees it change size
        merged = {n: h for n, h in routing.health.items() if not h.by or n in results}
        for name, found in results.items():
            by = str(found.get("by") or "")
            at = found.get("at")
            if by == self.owner or not isinstance(at, (int, float)):
                continue
            at = now - max(0.0, wall - float(at))
            mine = merged.get(name)
            if mine is not None and mine.at >= at:
                continue
            merged[name] = HealthResult(
                ok=found.get("ok") is True, detail=str(found.get("detail") or ""), at=at, by=by
            )
        if merged != routing.health:
            routing.health = merged

    # ------------------------------------------------------------------ reading

    def describe(self, key: str, now: float) -> dict[str, Any] | None:
        """The fleet's state of ``key`` at the last read, for ``kernel.stats()``."""
        state = self.view.get(key)
        if state is None or self.read_at is None:
            return None
        age = max(0.0, now - self.read_at)
        return {
            "state": state.state,
            "retry_after": round(max(0.0, state.remaining - age), 3)
            if state.state == "open"
            else None,
            "reason": state.reason,
            "by": state.by or None,
            "probe_by": state.probe or None,
            "age": round(age, 3),
        }

    def forget(self) -> None:
        """In a forked child: its own name, no task of the parent's loop."""
        self.shared.rename()
        self._task = None
        self._pending = set()
        self._publishing.clear()
        self.view, self.read_at = {}, None

    async def aclose(self) -> None:
        self._closing = True  # the follower stops even if a cancellation is lost below it
        tasks = [t for t in (self._task, *self._pending) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        try:
            done, _ = await asyncio.wait(tasks, timeout=CLOSE_WAIT)
        except RuntimeError:  # tasks of another (closed) loop
            return
        for task in done:  # retrieved: no "exception was never retrieved"
            if not task.cancelled():
                task.exception()

    def stats(self) -> dict[str, Any]:
        return {
            "instance": self.owner,
            "published": self.published,
            "adopted": self.adopted,
            "probes_won": self.probes_won,
            "probes_lost": self.probes_lost,
        }


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
    if shared is None:
        return None
    fleet = FleetBreakers(shared.breakers())
    kernel.lifecycle.on_fork(fleet.forget)
    return fleet
