"""The rate-limit gate the kernel asks before every attempt (``provide_gate``).

``acquire`` reserves one request and the attempt's worst-case tokens (counted input
plus ``max_tokens``, else the model's output limit) in every bucket whose rule
matches the candidate, plus the buckets learned from the provider's headers;
``release`` corrects the reservation by the real usage, learns the provider's
remaining allowance from the response headers, and after a 429 holds the
deployment until its ``Retry-After``.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from llmkernel.errors import RateLimitError, RefusedError
from llmkernel_ratelimit.headers import has_rate_headers, parse_headers
from llmkernel_ratelimit.limiter import Limiter, NoRoom
from llmkernel_ratelimit.settings import LimitRule, RateLimitSettings
from llmkernel_ratelimit.store import Claim, LimitStore, MemoryStore, Ticket

__all__ = ["RateLimitGate"]

_STATE = "llmkernel_ratelimit"
_LEARNED_WINDOW = 60.0
_NEVER = 0.0
_INF = float("inf")


def _pattern(text: str) -> str:
    return text if "/" in text else f"{text}/*"


@attrs.frozen(kw_only=True)
class _Plan:
    """What the configured rules ask of one deployment, worked out once: the rules
    that match it, whether any limits tokens, and the request claims whose key
    depends on nothing per call (reused as they are)."""

    rules: tuple[tuple[str, LimitRule], ...]
    tokens: bool
    fixed_requests: tuple[Claim | None, ...]  # per rule; None: keyed per call
    scoped: bool  # some rule applies to one key's or tenant's calls only
    modes: tuple[str, ...]  # each rule's mode


def _value(dimension: str, candidate: Any, metadata: Mapping[str, Any]) -> str:
    if dimension == "provider":
        return str(candidate.provider)
    if dimension == "model":
        return str(candidate.qualified)
    return str(metadata.get(dimension) or "")


class RateLimitGate:
    """Limits requests and tokens per window, per provider, model, tenant and key."""

    _PLANS_MAX = 4096  # deployments remembered (a config names a bounded set)

    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        store: LimitStore | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store if store is not None else MemoryStore()
        make = getattr(self.store, "limiter", None)  # a store with a limiter of its own
        self.limiter: Limiter = (
            make(clock) if make is not None else Limiter(self.store, clock=clock)
        )
        self.clock = clock
        self._rules = [
            (_pattern(rule.pattern or name), name, rule) for name, rule in settings.limits.items()
        ]
        self._plans: dict[tuple[str, str, str], _Plan] = {}
        self._learned: dict[str, set[str]] = {}  # deployment -> learned kinds
        self.refused = 0
        self.waited = 0

    def __repr__(self) -> str:
        return f"<RateLimitGate mode={self.settings.mode!r} rules={len(self._rules)}>"

    # ------------------------------------------------------------------ claims

    def _plan(self, candidate: Any) -> _Plan:
        ident = (candidate.provider, candidate.model, candidate.provider_type)
        plan = self._plans.get(ident)
        if plan is None:
            names = (candidate.qualified, f"{candidate.provider_type}/{candidate.model}")
            rules = tuple(
                (name, rule)
                for pattern, name, rule in self._rules
                if any(fnmatch.fnmatchcase(n, pattern) for n in names)
            )
            fixed: list[Claim | None] = []
            for name, rule in rules:
                if (
                    rule.requests_per_minute is None
                    or any(d in ("tenant", "key") for d in rule.per)
                    or _scoped(rule)
                ):
                    fixed.append(None)
                    continue
                base = name + "".join(f"|{d}={_value(d, candidate, {})}" for d in rule.per)
                fixed.append(_requests_claim(base, rule, rule.requests_per_minute))
            plan = _Plan(
                rules=rules,
                tokens=any(r.tokens_per_minute is not None for _, r in rules),
                fixed_requests=tuple(fixed),
                scoped=any(_scoped(r) for _, r in rules),
                modes=tuple(r.mode or self.settings.mode for _, r in rules),
            )
            if len(self._plans) >= self._PLANS_MAX:
                self._plans.clear()
            self._plans[ident] = plan
        return plan

    def claims(
        self, candidate: Any, metadata: Mapping[str, Any], input_tokens: int, output_tokens: int
    ) -> list[Claim]:
        """The claims one attempt makes: a request and its tokens in each bucket."""
        return self._claims(self._plan(candidate), candidate, metadata, input_tokens, output_tokens)

    def _claims(
        self,
        plan: _Plan,
        candidate: Any,
        metadata: Mapping[str, Any],
        input_tokens: int,
        output_tokens: int,
    ) -> list[Claim]:
        claims = []
        scoped = plan.scoped
        for (name, rule), fixed in zip(plan.rules, plan.fixed_requests, strict=True):
            if scoped and not _applies(rule, metadata):
                continue
            if fixed is not None and rule.tokens_per_minute is None:
                claims.append(fixed)  # the common case: nothing to build
                continue
            base = name + "".join(f"|{d}={_value(d, candidate, metadata)}" for d in rule.per)
            if fixed is not None:
                claims.append(fixed)
            elif rule.requests_per_minute is not None:
                claims.append(_requests_claim(base, rule, rule.requests_per_minute))
            if rule.tokens_per_minute is not None:
                claims.append(
                    Claim(
                        key=f"{base}|tokens",
                        limit=rule.amount(rule.tokens_per_minute),
                        window=rule.window,
                        amount=float(input_tokens + output_tokens),
                    )
                )
        if self._learned:
            deployment = candidate.qualified
            for kind in sorted(self._learned.get(deployment, ())):
                if kind == "requests":
                    amount = 1.0
                elif kind == "tokens":
                    amount = float(input_tokens + output_tokens)
                elif kind == "input_tokens":
                    amount = float(input_tokens)
                else:
                    amount = float(output_tokens)
                claims.append(
                    Claim(
                        key=f"learned|{deployment}|{kind}",
                        limit=_INF,  # the observed limit is kept by the store
                        window=_LEARNED_WINDOW,
                        amount=amount,
                    )
                )
        return claims

    # ------------------------------------------------------------------ the gate

    async def acquire(self, ctx: Any, attempt: Any) -> None:
        candidate = attempt.candidate
        plan = self._plan(candidate)
        learned = self._learned.get(candidate.qualified) if self._learned else None
        if not plan.rules and learned is None:
            return
        input_tokens = output_tokens = 0
        if plan.tokens or (learned and (len(learned) > 1 or "requests" not in learned)):
            input_tokens = int(ctx.input_tokens(candidate))
            output_tokens = int(ctx.max_output_tokens(candidate))
        claims = self._claims(plan, candidate, ctx.metadata, input_tokens, output_tokens)
        if not claims:
            return
        limiter = self.limiter
        first = limiter.try_take(claims)  # room now, nobody waiting: no coroutine
        try:
            if isinstance(first, Ticket):
                ticket = first
            else:
                wait = self._may_wait(plan, candidate, ctx.metadata, claims)
                ticket = await limiter.take(claims, ctx.deadline, wait=wait, first=first)
        except NoRoom as exc:
            self.refused += 1
            retry_after = None if exc.retry_after == _INF else round(exc.retry_after, 3)
            why = (
                "a request larger than the limit"
                if retry_after is None
                else "no room before the deadline"
                if exc.waited
                else "no room"
            )
            now = self.clock()
            named = set(exc.keys)
            full = [c for c in claims if c.key in named and self.store.wait_for([c], now) > 0] or [
                c for c in claims if c.key in named
            ]
            buckets = ", ".join(
                f"{c.key}: {c.limit:g} per {c.window:g} s"
                if c.limit != _INF
                else f"{c.key}: as the provider reported"
                for c in full
            )
            raise RefusedError(
                f"rate limit on {candidate.qualified}: {why} ({buckets})",
                kind="rate_limit",
                retry_after=retry_after,
                provider=candidate.provider,
                model=candidate.model,
            ) from None
        attempt.state[_STATE] = (ticket, claims, input_tokens)

    def _may_wait(
        self, plan: _Plan, candidate: Any, metadata: Mapping[str, Any], claims: list[Claim]
    ) -> bool:
        """Whether this attempt may wait for room: every rule waits; or rules of both
        modes apply and those that refuse have room (raises ``NoRoom`` when not)."""
        applying = [
            (name, rule, mode)
            for (name, rule), mode in zip(plan.rules, plan.modes, strict=True)
            if not plan.scoped or _applies(rule, metadata)
        ]
        modes = {mode for _, _, mode in applying}
        if self._learned.get(candidate.qualified):
            modes.add(self.settings.mode)  # what providers' headers taught
        if "reject" not in modes:
            return True
        if "wait" not in modes:
            return False
        refusing = {
            key
            for name, rule, mode in applying
            if mode == "reject"
            for key in self._keys_of(name, rule, candidate, metadata)
        }
        now = self.clock()
        mine = [c for c in claims if c.key in refusing]
        wait = self.store.wait_for(mine, now) if mine else 0.0
        if wait > 0:
            raise NoRoom(wait, [c.key for c in mine])
        return True

    @staticmethod
    def _keys_of(
        name: str, rule: LimitRule, candidate: Any, metadata: Mapping[str, Any]
    ) -> list[str]:
        base = name + "".join(f"|{d}={_value(d, candidate, metadata)}" for d in rule.per)
        return [f"{base}|requests", f"{base}|tokens"]

    def release(self, ctx: Any, attempt: Any, outcome: Any) -> None:
        held = attempt.state.pop(_STATE, None)
        if held is not None:
            ticket, claims, input_tokens = held
            self._correct(ticket, claims, input_tokens, outcome)
        if self.settings.learn_from_headers:
            headers = getattr(outcome, "headers", None)
            if headers and has_rate_headers(headers):
                self.learn(attempt.candidate, headers)
        error = getattr(outcome, "error", None)
        if isinstance(error, RateLimitError):
            self.back_off(attempt.candidate, error.retry_after)
        self.limiter.notify()

    def _correct(
        self, ticket: Ticket, claims: Sequence[Claim], input_tokens: int, outcome: Any
    ) -> None:
        status = getattr(outcome, "status", "ok")
        usage = getattr(outcome, "usage", None)
        amounts: dict[str, float] = {}
        for claim in claims:
            key = claim.key
            if status == "refused":
                amounts[key] = 0.0  # never sent: everything back
                continue
            if key.endswith("|requests"):
                continue
            kind = key[key.rfind("|") + 1 :]
            if usage is not None:
                if kind == "tokens":
                    amounts[key] = float(usage.input_tokens + usage.output_tokens)
                elif kind == "input_tokens":
                    amounts[key] = float(usage.input_tokens)
                else:
                    amounts[key] = float(usage.output_tokens)
            else:  # sent but no usage known: keep the input, return the output
                amounts[key] = float(input_tokens if kind != "output_tokens" else 0)
        if amounts:
            self.store.correct(ticket, amounts)

    # ------------------------------------------------------------------ learning

    def learn(self, candidate: Any, headers: Mapping[str, str]) -> None:
        """Limit ``candidate`` by what its provider reports left in ``headers``."""
        if not headers:
            return
        facts = parse_headers(headers, time.time())
        if not facts:
            return
        deployment = candidate.qualified
        now = self.clock()
        kinds = self._learned.setdefault(deployment, set())
        for kind in ("requests", "tokens", "input_tokens", "output_tokens"):
            allowance = getattr(facts, kind)
            if allowance is None:
                continue
            limit = allowance.limit if allowance.limit is not None else allowance.remaining
            reset = allowance.reset if allowance.reset is not None else _LEARNED_WINDOW
            self.store.observe(
                f"learned|{deployment}|{kind}", float(limit), float(allowance.remaining), reset, now
            )
            kinds.add(kind)

    def back_off(self, candidate: Any, retry_after: float | None) -> None:
        """Hold ``candidate``'s deployment for ``retry_after`` seconds after a 429."""
        if not retry_after or retry_after <= 0:
            return
        deployment = candidate.qualified
        self._learned.setdefault(deployment, set()).add("requests")
        self.store.block(
            f"learned|{deployment}|requests",
            self.clock() + retry_after,
            float("inf"),
            _LEARNED_WINDOW,
        )

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """Every bucket's limit, what is used and left, and the seconds until it is
        whole again; waiters per bucket; deployments with learned limits."""
        now = self.clock()
        waiting = self.limiter.waiting()
        buckets: dict[str, Any] = {}
        deployments: dict[str, Any] = {}
        for key, state in self.store.states(now).items():
            row = {
                "limit": state.limit if state.limit != float("inf") else None,
                "used": round(state.used, 3),
                "remaining": round(state.remaining, 3) if state.limit != float("inf") else None,
                "reset": round(state.reset, 3),
                "window": state.window,
                "waiting": waiting.get(key, 0),
            }
            buckets[key] = row
            if key.startswith("learned|"):
                _, deployment, kind = key.split("|")
                deployments.setdefault(deployment, {}).setdefault("ratelimit", {})[kind] = row
        return {
            "ratelimit": {
                "mode": self.settings.mode,
                "refused": self.refused,
                "buckets": buckets,
            },
            "deployments": deployments,
        }


def _scoped(rule: LimitRule) -> bool:
    return rule.key is not None or rule.tenant is not None


def _applies(rule: LimitRule, metadata: Mapping[str, Any]) -> bool:
    """Whether a rule scoped to a key or tenant applies to a call's ``metadata``."""
    if rule.key is not None and metadata.get("key") != rule.key:
        return False
    return rule.tenant is None or metadata.get("tenant") == rule.tenant


def _requests_claim(base: str, rule: LimitRule, per_minute: float) -> Claim:
    """One request in ``rule``'s bucket ``base``."""
    return Claim(
        key=f"{base}|requests", limit=rule.amount(per_minute), window=rule.window, amount=1.0
    )
