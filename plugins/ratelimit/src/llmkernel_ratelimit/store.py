"""Where the counts live: sliding windows behind a small interface.

A window admits a claim when what was admitted in the last ``window`` seconds plus
the claim fits the limit: never more than the limit in any window, which a token
bucket (up to twice its size in a window: a full bucket, then the refill) cannot
promise. Reservations are corrected later (a request's real token usage replaces
its estimate).

:class:`LimitStore` is what a shared backend implements; :class:`MemoryStore` keeps
the counts in this process, :class:`~llmkernel_ratelimit.filestore.FileStore` in a
file every process of a machine maps (a Redis store, for several gateway instances,
is the same interface). Methods are short, non-blocking and thread-safe.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

__all__ = ["Claim", "LimitStore", "MemoryStore", "Ticket", "WindowState"]

_INF = float("inf")


@attrs.frozen(kw_only=True)
class Claim:
    """``amount`` of bucket ``key``, which admits ``limit`` per ``window`` seconds."""

    key: str
    limit: float
    window: float
    amount: float


@attrs.define(kw_only=True, eq=False)
class _Slot:
    at: float
    amount: float
    gone: bool = False


@attrs.define(kw_only=True, eq=False)
class Ticket:
    """What one successful take holds, to correct or return later: per bucket key,
    the store's own handle of the amount taken (each store knows its own)."""

    slots: list[tuple[str, Any]] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class WindowState:
    limit: float
    window: float
    used: float
    remaining: float
    reset: float  # seconds until the whole limit is free again


class LimitStore(Protocol):
    def take(self, claims: Sequence[Claim], now: float) -> Ticket | float:
        """All claims at once, or none: a :class:`Ticket`, else the seconds until
        they might fit (``inf`` when a claim exceeds its limit outright)."""
        ...

    def wait_for(self, claims: Sequence[Claim], now: float) -> float:
        """Seconds until ``claims`` might fit (``0`` when they fit now)."""
        ...

    def correct(self, ticket: Ticket, amounts: Mapping[str, float]) -> None:
        """Set the amounts a ticket holds per bucket key (a refund when smaller)."""
        ...

    def block(self, key: str, until: float, limit: float, window: float) -> None:
        """Admit nothing on ``key`` before ``until`` (a provider said to wait)."""
        ...

    def observe(self, key: str, limit: float, remaining: float, reset: float, now: float) -> None:
        """A provider reported ``remaining`` of ``limit`` until ``reset`` seconds from
        now: the window now holds ``limit - remaining``, all freed at the reset."""
        ...

    def states(self, now: float) -> dict[str, WindowState]: ...


@attrs.define(kw_only=True, eq=False)
class _Window:
    limit: float
    window: float
    used: float = 0.0
    slots: deque[_Slot] = attrs.field(factory=deque)
    blocked_until: float = 0.0

    def expire(self, now: float) -> None:
        edge = now - self.window
        slots = self.slots
        while slots and slots[0].at <= edge:
            slot = slots.popleft()
            slot.gone = True
            self.used -= slot.amount
        if not slots:
            self.used = 0.0  # no float drift once empty

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits; ``inf`` when it never can."""
        if amount > self.limit:
            return float("inf")
        blocked = max(0.0, self.blocked_until - now)
        excess = self.used + amount - self.limit
        if excess <= 0:
            return blocked
        freed = 0.0
        for slot in self.slots:
            freed += slot.amount
            if freed >= excess - 1e-9:
                return max(blocked, slot.at + self.window - now)
        return max(blocked, self.window)


class MemoryStore:
    """Sliding windows in this process's memory."""

    SWEEP_EVERY = 1024  # takes between sweeps of idle windows

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._takes = 0

    def __len__(self) -> int:
        return len(self._windows)

    def _sweep(self, now: float) -> None:
        """Forget windows with nothing in them (one per tenant or key adds up)."""
        for key in [
            k for k, w in self._windows.items() if not w.slots or w.slots[-1].at <= now - w.window
        ]:
            window = self._windows[key]
            if window.blocked_until <= now:
                del self._windows[key]

    def _window(self, claim: Claim, now: float) -> _Window:
        window = self._windows.get(claim.key)
        if window is None:
            window = self._windows[claim.key] = _Window(limit=claim.limit, window=claim.window)
        elif claim.limit != _INF:  # inf: keep the limit the store learned
            window.limit, window.window = claim.limit, claim.window
        slots = window.slots
        if slots and slots[0].at <= now - window.window:
            window.expire(now)
        return window

    def take(self, claims: Sequence[Claim], now: float) -> Ticket | float:
        with self._lock:
            self._takes += 1
            if self._takes % self.SWEEP_EVERY == 0:
                self._sweep(now)
            windows = []
            wait = 0.0
            for claim in claims:
                window = self._window(claim, now)
                windows.append(window)
                amount = claim.amount
                if (
                    window.used + amount <= window.limit
                    and amount <= window.limit
                    and window.blocked_until <= now
                ):
                    continue  # fits now: what wait_for would say, without the call
                wait = max(wait, window.wait_for(amount, now))
            if wait > 0:
                return wait
            ticket = Ticket()
            held = ticket.slots
            for window, claim in zip(windows, claims, strict=True):
                slot = _Slot(at=now, amount=claim.amount)
                window.slots.append(slot)
                window.used += claim.amount
                held.append((claim.key, slot))
            return ticket

    def wait_for(self, claims: Sequence[Claim], now: float) -> float:
        with self._lock:
            return max((self._window(c, now).wait_for(c.amount, now) for c in claims), default=0.0)

    def correct(self, ticket: Ticket, amounts: Mapping[str, float]) -> None:
        with self._lock:
            for key, slot in ticket.slots:
                if key not in amounts or not isinstance(slot, _Slot):
                    continue
                window = self._windows.get(key)
                new = max(0.0, amounts[key])
                if window is not None and not slot.gone:
                    window.used += new - slot.amount
                slot.amount = new

    def block(self, key: str, until: float, limit: float, window: float) -> None:
        with self._lock:
            state = self._windows.get(key)
            if state is None:
                state = self._windows[key] = _Window(limit=limit, window=window)
            state.blocked_until = max(state.blocked_until, until)

    def observe(self, key: str, limit: float, remaining: float, reset: float, now: float) -> None:
        with self._lock:
            state = self._windows.get(key)
            if state is None:
                state = self._windows[key] = _Window(limit=limit, window=60.0)
            state.limit = limit
            for slot in state.slots:
                slot.gone = True
            state.slots.clear()
            state.used = 0.0
            held = max(0.0, limit - remaining)
            if held > 0:
                frees_in = min(max(reset, 0.0), state.window)
                slot = _Slot(at=now - state.window + frees_in, amount=held)
                state.slots.append(slot)
                state.used = held

    def states(self, now: float) -> dict[str, WindowState]:
        with self._lock:
            out = {}
            for key, window in self._windows.items():
                window.expire(now)
                reset = window.slots[-1].at + window.window - now if window.slots else 0.0
                reset = max(reset, window.blocked_until - now, 0.0)
                out[key] = WindowState(
                    limit=window.limit,
                    window=window.window,
                    used=window.used,
                    remaining=max(0.0, window.limit - window.used)
                    if window.blocked_until <= now
                    else 0.0,
                    reset=reset,
                )
            return out
