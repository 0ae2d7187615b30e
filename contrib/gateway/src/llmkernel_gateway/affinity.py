"""Session affinity: a conversation stays on the deployment that answered it.

A provider's prompt cache only helps a conversation that keeps going to the same
deployment, but a round-robin or latency strategy would spread its turns. A client
that names its conversation (Claude Code's ``x-claude-code-session-id``, or the
header ``[plugin.gateway] session_header`` names) gets, for each model it asks for,
the deployment that answered its last turn first in the candidate list, while that
deployment is healthy: the kernel still drops candidates whose breaker is open
(filters run first) and moves unhealthy ones to the back, and fallback goes on to
the others when it fails (the next turn then sticks to the one that answered).

State is bounded: at most ``max_sessions`` conversations (the least recently used
forgotten first), each forgotten after ``affinity_ttl`` quiet seconds; the key is
the tenant, the model asked for and the session id (at most 128 characters, longer
ones are hashed), so one tenant cannot steer another's.

Two pieces: :class:`AffinityPlugin` (an ``on_request_end`` hook that remembers the
deployment that answered) and :func:`pin_first`, which the gateway's strategy
(:mod:`llmkernel_gateway.deployments`, wrapping the configured one in every config
the kernel is given) calls to put the remembered deployment first.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.context import Outcome, RequestContext
    from llmkernel.routing import Candidate

#: The request metadata key that carries the session id (never sent upstream).
SESSION_KEY = "session"
MAX_SESSION_ID = 128


def session_id(value: str) -> str:
    """The id as kept: itself when short, else a digest."""
    if len(value) <= MAX_SESSION_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


class Sessions:
    """``(tenant, model, session) -> "provider/model"``, bounded and expiring."""

    def __init__(self, *, max_sessions: int, ttl: float) -> None:
        self.max_sessions = max_sessions
        self.ttl = ttl
        self._pins: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pins)

    def get(self, key: tuple[str, str, str]) -> str | None:
        found = self._pins.get(key)
        if found is None:
            return None
        deployment, seen = found
        if time.monotonic() - seen > self.ttl:
            del self._pins[key]
            return None
        self._pins.move_to_end(key)  # the most recently used is forgotten last
        return deployment

    def remember(self, key: tuple[str, str, str], deployment: str) -> None:
        if self.max_sessions <= 0:
            return
        self._pins[key] = (deployment, time.monotonic())
        self._pins.move_to_end(key)
        while len(self._pins) > self.max_sessions:
            self._pins.popitem(last=False)


def _key(ctx: RequestContext) -> tuple[str, str, str] | None:
    metadata = ctx.request.metadata
    session = metadata.get(SESSION_KEY)
    if not session:
        return None
    return (metadata.get("tenant", ""), ctx.request.model, session)


class AffinityPlugin:
    """Remembers which deployment answered each session's call."""

    __llmkernel_name__ = "gateway-affinity"

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @hookimpl
    def on_request_end(self, ctx: RequestContext, outcome: Outcome) -> None:
        if outcome.status != "ok" or outcome.candidate is None or outcome.cached:
            return
        key = _key(ctx)
        if key is not None:
            self.sessions.remember(key, outcome.candidate.qualified)


def pin_first(ctx: RequestContext, ordered: list[Candidate], sessions: Sessions) -> list[Candidate]:
    """``ordered`` with the session's deployment moved to the front (the gateway's
    strategy calls it after the configured strategy has ordered the candidates)."""
    if len(ordered) < 2:
        return ordered
    key = _key(ctx)
    pinned = sessions.get(key) if key is not None else None
    if pinned is None:
        return ordered
    for index, candidate in enumerate(ordered):
        if candidate.qualified == pinned:
            if index:
                ordered = [candidate, *ordered[:index], *ordered[index + 1 :]]
            break
    return ordered


__all__ = ["SESSION_KEY", "AffinityPlugin", "Sessions", "pin_first", "session_id"]
