"""A circuit breaker per deployment (provider instance + model), as plain state.

States::

    closed ──(N consecutive failures, or error rate over the window)──▶ open
    open ──(cooldown over)──▶ half_open: exactly one probe may pass, others skip it
    half_open ──probe succeeds──▶ closed
    half_open ──probe fails──▶ open, cooldown times ``backoff`` (up to ``max_cooldown``)
    any ──authentication/permission failure──▶ open until the config changes

The cooldown is at least the provider's ``Retry-After`` (capped at
``max_cooldown``). The reason it gives while open keeps the last failure's error
(``5 consecutive failures; last: ServerError: ...``), so a refusal says what the
upstream said. Every method takes ``now`` (``time.monotonic()`` seconds), so the
machine is tested without sleeping. It is not thread-safe on its own: the routing
state calls it under its lock.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

import attrs

State = Literal["closed", "open", "half_open"]
Verdict = Literal["success", "failure", "none"]

#: Error kinds that count as the deployment failing (others mean it answered).
FAILURE_KINDS: tuple[str, ...] = (
    "server",
    "overloaded",
    "timeout",
    "network",
    "rate_limit",
    "malformed_response",
    "quota",
    "authentication",
    "permission",
)
#: Kinds that keep the breaker open until the configuration changes.
LOCKING_KINDS: tuple[str, ...] = ("authentication", "permission")


@attrs.frozen(kw_only=True)
class BreakerSettings:
    """``[plugin.routing.breaker]``; times in seconds."""

    enabled: bool = True
    failures: int = 5  # consecutive failures that open it
    error_rate: float = 0.5  # share of failures in the window that opens it
    window: float = 60.0  # the sliding window for the error rate
    min_requests: int = 20  # attempts in the window before the rate counts
    cooldown: float = 30.0  # how long it stays open (at least Retry-After)
    backoff: float = 2.0  # a failed probe multiplies the cooldown by this
    max_cooldown: float = 300.0  # cap on cooldowns, Retry-After included
    #: with a fleet: how long a claim on the half-open probe lasts unless renewed
    #: (its holder renews it while the probe runs): a holder that died blocks the
    #: fleet's probe this long at most
    probe_timeout: float = 15.0
    kinds: list[str] = attrs.field(factory=lambda: list(FAILURE_KINDS))

    def __attrs_post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError("failures must be at least 1")
        if not 0.0 < self.error_rate <= 1.0:
            raise ValueError("error_rate must be in (0, 1]")
        for name in ("window", "cooldown", "max_cooldown"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.backoff < 1.0:
            raise ValueError("backoff must be at least 1")
        if not self.probe_timeout > 0:
            raise ValueError("probe_timeout must be positive")


# the sliding window is kept in this many slices: bounded memory whatever the traffic
_SLICES = 12
_ERROR_CHARS = 300  # of an upstream's error kept in the reason


@attrs.define(kw_only=True, eq=False)
class Breaker:
    """The breaker of one deployment."""

    settings: BreakerSettings = attrs.field(factory=BreakerSettings)
    state: State = "closed"
    consecutive: int = 0
    opened_at: float | None = None
    until: float = 0.0  # end of the current cooldown (inf when locked)
    cooldown: float = 0.0  # the current cooldown
    reason: str = ""
    last_error: str = ""  # the last failure's error, as ``Type: message``
    probe: bool = False  # a half-open probe is in flight
    #: while half-open: another instance of the fleet holds the probe until then
    #: (monotonic; 0 when not)
    elsewhere: float = 0.0
    opens: int = 0  # times it opened
    # (slice start, successes, failures), newest last
    _slices: deque[list[float]] = attrs.field(factory=deque)

    # ------------------------------------------------------------------ reading

    def current(self, now: float) -> State:
        """The state at ``now``: an open breaker whose cooldown is over is half-open."""
        if self.state == "open" and now >= self.until:
            self.state = "half_open"
            self.probe = False
            self.elsewhere = 0.0
        elif self.elsewhere and now >= self.elsewhere:
            self.stop_waiting()  # the fleet's probe gave no result in time: ours may go
        return self.state

    def available(self, now: float) -> bool:
        """Whether a request may be sent now (without claiming the probe)."""
        state = self.current(now)
        return state == "closed" or (state == "half_open" and not self.probe)

    def retry_after(self, now: float) -> float | None:
        """Seconds until it may let a request through, ``None`` when unknown (locked
        or waiting for a probe)."""
        state = self.current(now)
        if state == "closed":
            return 0.0
        if state == "open" and math.isfinite(self.until):
            return max(0.0, self.until - now)
        return None

    # ------------------------------------------------------------------ gate

    def acquire(self, now: float) -> bool | Literal["probe"]:
        """Claim a pass: ``True`` when closed, ``"probe"`` for the single half-open
        probe, ``False`` when it must be skipped."""
        state = self.current(now)
        if state == "closed":
            return True
        if state == "half_open" and not self.probe:
            self.probe = True
            return "probe"
        return False

    def release(
        self,
        now: float,
        verdict: Verdict,
        *,
        probe: bool = False,
        kind: str = "",
        retry_after: float | None = None,
        error: str = "",
    ) -> None:
        """Record how a passed attempt ended (``error``: a failure's, as ``Type:
        message``, kept for the reason)."""
        if verdict == "failure" and error:
            self.last_error = error if len(error) <= _ERROR_CHARS else error[:_ERROR_CHARS] + "…"
        if probe:
            self.probe = False
            if self.state != "half_open":
                return  # locked meanwhile: stays so
            if verdict == "success":
                self._close()
            elif verdict == "failure":
                self._open(now, kind, retry_after, grow=True)
            return
        if verdict == "none":
            return
        self._count(now, verdict == "failure")
        if self.state != "closed":
            return  # an attempt that started before it opened: its end changes nothing
        if verdict == "success":
            self.consecutive = 0
            return
        self.consecutive += 1
        if kind in LOCKING_KINDS:
            self._lock(kind)
        elif self.consecutive >= self.settings.failures:
            self._open(now, kind, retry_after, why=f"{self.consecutive} consecutive failures")
        else:
            total, failed = self._window(now)
            if total >= self.settings.min_requests and failed / total >= self.settings.error_rate:
                self._open(
                    now, kind, retry_after, why=f"error rate {failed}/{total} over the window"
                )

    def failure_verdict(self, kind: str) -> Verdict:
        """Whether an error of ``kind`` counts against the deployment."""
        return "failure" if kind in self.settings.kinds else "success"

    # ------------------------------------------------------------------ transitions

    def _close(self) -> None:
        self.state = "closed"
        self.consecutive = 0
        self.opened_at = None
        self.cooldown = 0.0
        self.reason = ""
        self.last_error = ""
        self.probe = False
        self.elsewhere = 0.0
        self._slices.clear()

    def _open(
        self,
        now: float,
        kind: str,
        retry_after: float | None,
        *,
        grow: bool = False,
        why: str = "",
    ) -> None:
        if kind in LOCKING_KINDS:
            self._lock(kind)
            return
        settings = self.settings
        base = self.cooldown * settings.backoff if grow and self.cooldown else settings.cooldown
        wanted = max(base, retry_after or 0.0)
        if kind == "quota":
            wanted = settings.max_cooldown
        self.cooldown = min(wanted, settings.max_cooldown)
        self.state = "open"
        self.opened_at = now
        self.until = now + self.cooldown
        self.opens += 1
        self.reason = self._last(f"half-open probe failed ({kind})" if grow else (why or kind))

    def adopt(self, now: float, seconds: float, reason: str) -> None:
        """Open for ``seconds`` because the fleet has it open (another instance's
        failures): this instance's own cooldown rules apply after."""
        self.state = "open"
        self.opened_at = now
        self.cooldown = seconds
        self.until = now + seconds
        self.opens += 1
        self.reason = reason
        self.probe = False
        self.elsewhere = 0.0

    def wait_for_fleet(self, now: float, seconds: float) -> None:
        """Half-open, and another instance won the probe: skipped until its result
        is published, or for ``seconds`` at most."""
        if self.state == "half_open":
            self.probe = True
            self.elsewhere = now + seconds

    def stop_waiting(self) -> None:
        """No instance holds the fleet's probe any more: this one may claim it."""
        self.probe = False
        self.elsewhere = 0.0

    def follow_half_open(self, reason: str) -> None:
        """Closed here, half-open in the fleet: the next call must claim the probe."""
        self.state = "half_open"
        self.probe = False
        self.elsewhere = 0.0
        self.reason = reason

    def follow_close(self) -> None:
        """The fleet's probe succeeded."""
        self._close()

    def _lock(self, kind: str) -> None:
        self.state = "open"
        self.until = math.inf
        self.cooldown = math.inf
        self.opens += 1
        self.reason = self._last(f"{kind} failed: open until the configuration changes")

    def _last(self, why: str) -> str:
        return f"{why}; last: {self.last_error}" if self.last_error else why

    # ------------------------------------------------------------------ window

    def _count(self, now: float, failed: bool) -> None:
        width = self.settings.window / _SLICES or 1.0
        slices = self._slices
        if not slices or now - slices[-1][0] >= width:
            slices.append([now, 0.0, 0.0])
        slices[-1][2 if failed else 1] += 1
        cutoff = now - self.settings.window
        while slices and slices[0][0] < cutoff:
            slices.popleft()

    def _window(self, now: float) -> tuple[int, int]:
        cutoff = now - self.settings.window
        ok = failed = 0.0
        for start, s, f in self._slices:
            if start >= cutoff:
                ok += s
                failed += f
        return int(ok + failed), int(failed)

    def snapshot(self, now: float) -> dict[str, object]:
        """Plain data for ``kernel.stats()``."""
        state = self.current(now)
        retry = self.retry_after(now)
        return {
            "state": state,
            "consecutive_failures": self.consecutive,
            "opens": self.opens,
            "reason": self.reason,
            "retry_after": None if retry is None else round(retry, 3),
            "probe_in_flight": self.probe,
            "probe_elsewhere": bool(self.elsewhere),
        }


__all__ = ["FAILURE_KINDS", "LOCKING_KINDS", "Breaker", "BreakerSettings", "State", "Verdict"]
