"""Windows, the fair limiter, header parsing and the gate's bookkeeping, on plain data."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import attrs
import pytest

from llmkernel.errors import RateLimitError, RefusedError
from llmkernel.routing import Candidate
from llmkernel.types import Usage
from llmkernel_ratelimit.gate import RateLimitGate
from llmkernel_ratelimit.headers import parse_duration, parse_headers
from llmkernel_ratelimit.limiter import Limiter, NoRoom
from llmkernel_ratelimit.settings import LimitRule, RateLimitSettings
from llmkernel_ratelimit.store import Claim, MemoryStore, Ticket


def claim(key: str = "k", limit: float = 3, window: float = 10, amount: float = 1) -> Claim:
    return Claim(key=key, limit=limit, window=window, amount=amount)


# ---------------------------------------------------------------------- windows


def test_window_admits_the_limit_then_waits_for_the_oldest() -> None:
    store = MemoryStore()
    for t in (0.0, 1.0, 2.0):
        assert isinstance(store.take([claim()], t), Ticket)
    assert store.take([claim()], 3.0) == pytest.approx(7.0)  # the slot of t=0 leaves at 10
    assert isinstance(store.take([claim()], 10.0), Ticket)


def test_all_or_nothing_across_buckets() -> None:
    store = MemoryStore()
    assert isinstance(store.take([claim("a", limit=1)], 0.0), Ticket)
    wait = store.take([claim("b", limit=5), claim("a", limit=1)], 1.0)
    assert wait == pytest.approx(9.0)
    assert store.states(1.0)["b"].used == 0  # b was not charged


def test_a_claim_larger_than_the_limit_never_fits() -> None:
    assert math.isinf(MemoryStore().take([claim(limit=10, amount=11)], 0.0))  # type: ignore[arg-type]


def test_correct_refunds_and_charges() -> None:
    store = MemoryStore()
    ticket = store.take([claim(limit=100, amount=80)], 0.0)
    assert isinstance(ticket, Ticket)
    assert store.take([claim(limit=100, amount=30)], 1.0) > 0
    store.correct(ticket, {"k": 20})
    assert isinstance(store.take([claim(limit=100, amount=30)], 1.0), Ticket)
    assert store.states(1.0)["k"].used == 50


def test_observe_holds_what_the_provider_says_is_used_until_its_reset() -> None:
    store = MemoryStore()
    store.observe("k", limit=10, remaining=2, reset=5.0, now=100.0)
    inf = float("inf")
    assert isinstance(store.take([claim(limit=inf, window=60, amount=2)], 100.0), Ticket)
    assert store.take([claim(limit=inf, window=60, amount=1)], 100.0) == pytest.approx(5.0)
    state = store.states(100.0)["k"]
    assert (state.limit, state.remaining) == (10, 0)


def test_block_until() -> None:
    store = MemoryStore()
    store.block("k", until=50.0, limit=float("inf"), window=60.0)
    assert store.take([claim(limit=float("inf"))], 40.0) == pytest.approx(10.0)
    assert isinstance(store.take([claim(limit=float("inf"))], 50.0), Ticket)


# ---------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("12ms", 0.012), ("1h2m3s", 3723.0), ("0.5s", 0.5), ("2", 2.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_bad_duration() -> None:
    assert parse_duration("soon") is None


def test_openai_headers() -> None:
    facts = parse_headers(
        {
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-remaining-requests": "4999",
            "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-limit-tokens": "160000",
            "x-ratelimit-remaining-tokens": "159976",
            "x-ratelimit-reset-tokens": "6m0s",
        },
        now_epoch=0.0,
    )
    assert facts.requests is not None and facts.tokens is not None
    assert (facts.requests.limit, facts.requests.remaining) == (5000, 4999)
    assert facts.requests.reset == pytest.approx(0.012)
    assert facts.tokens.reset == pytest.approx(360.0)


def test_the_quick_header_test_agrees_with_the_parser() -> None:
    """``has_rate_headers`` (skips parsing a response without rate-limit headers)
    is true for every header name the parser reads a remaining count from."""
    from llmkernel_ratelimit.headers import has_rate_headers

    class Probed(dict[str, str]):
        names: list[str] = []

        def __contains__(self, name: object) -> bool:
            self.names.append(str(name))
            return super().__contains__(name)

    probed = Probed()
    parse_headers(probed, now_epoch=0.0)
    assert probed.names
    for name in probed.names:
        headers = {name: "5"}
        assert bool(parse_headers(headers, now_epoch=0.0)) == has_rate_headers(headers), name
        assert has_rate_headers(headers)
    plain = {"content-type": "application/json", "x-request-id": "r1"}
    assert not has_rate_headers(plain) and not parse_headers(plain, now_epoch=0.0)


def test_anthropic_headers() -> None:
    from datetime import datetime

    now = datetime.fromisoformat("2025-08-21T12:40:50+00:00").timestamp()
    facts = parse_headers(
        {
            "anthropic-ratelimit-requests-limit": "1000",
            "anthropic-ratelimit-requests-remaining": "999",
            "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z",
            "anthropic-ratelimit-input-tokens-limit": "80000",
            "anthropic-ratelimit-input-tokens-remaining": "79000",
            "anthropic-ratelimit-input-tokens-reset": "2025-08-21T12:41:00Z",
        },
        now_epoch=now,
    )
    assert facts.requests is not None and facts.input_tokens is not None
    assert facts.requests.reset == pytest.approx(9.0)
    assert facts.input_tokens.remaining == 79000 and facts.input_tokens.reset == pytest.approx(10)
    assert facts.tokens is None


def test_unknown_values_are_ignored() -> None:
    facts = parse_headers(
        {"x-ratelimit-limit-tokens": "-1", "x-ratelimit-remaining-tokens": "-1"}, 0.0
    )
    assert not facts


# ---------------------------------------------------------------------- limiter


async def test_reject_mode_says_when() -> None:
    limiter = Limiter(MemoryStore())
    await limiter.take([claim(limit=1, window=30)], time.monotonic() + 5, wait=False)
    with pytest.raises(NoRoom) as info:
        await limiter.take([claim(limit=1, window=30)], time.monotonic() + 5, wait=False)
    assert 29 < info.value.retry_after <= 30


async def test_wait_mode_does_not_wait_past_the_deadline() -> None:
    limiter = Limiter(MemoryStore())
    await limiter.take([claim(limit=1, window=30)], time.monotonic() + 5, wait=True)
    with pytest.raises(NoRoom):
        await limiter.take([claim(limit=1, window=30)], time.monotonic() + 1, wait=True)
    assert limiter.waiting() == {}


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = Limiter(MemoryStore())
    window = 0.2
    first = await limiter.take(
        [claim(limit=2, window=window, amount=2)], time.monotonic() + 5, wait=True
    )
    assert isinstance(first, Ticket)
    order: list[str] = []

    async def ask(name: str, amount: float) -> None:
        await limiter.take(
            [claim(limit=2, window=window, amount=amount)], time.monotonic() + 5, wait=True
        )
        order.append(name)

    big = asyncio.create_task(ask("big", 2))
    await asyncio.sleep(0)
    small = asyncio.create_task(ask("small", 1))
    await asyncio.gather(big, small)
    assert order == ["big", "small"]  # the small one did not jump the queue


# ---------------------------------------------------------------------- gate


@attrs.define
class Ctx:
    """The parts of llmkernel.context.RequestContext the gate reads."""

    metadata: dict[str, str] = attrs.field(factory=dict)
    deadline: float = attrs.field(factory=lambda: time.monotonic() + 5)
    inputs: int = 100
    outputs: int = 50

    def input_tokens(self, candidate: Any) -> int:
        return self.inputs

    def max_output_tokens(self, candidate: Any) -> int:
        return self.outputs


@attrs.define
class Attempt:
    candidate: Candidate
    state: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Outcome:
    status: str = "ok"
    usage: Usage | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    error: Exception | None = None


GPT = Candidate(provider="openai", model="gpt-4o", provider_type="openai")
MINI = Candidate(provider="openai", model="gpt-4o-mini", provider_type="openai")


def gate(mode: str = "reject", **limits: Any) -> RateLimitGate:
    rules = {k.replace("__", "/").replace("_STAR", "*"): LimitRule(**v) for k, v in limits.items()}
    return RateLimitGate(RateLimitSettings(mode=mode, limits=rules))  # type: ignore[arg-type]


def test_rules_match_by_instance_or_type_and_split_by_dimension() -> None:
    g = RateLimitGate(
        RateLimitSettings(
            limits={
                "openai": LimitRule(requests_per_minute=100),
                "openai/gpt-4o": LimitRule(tokens_per_minute=1000, per=["tenant"]),
                "*": LimitRule(requests_per_minute=10, per=["key", "model"]),
            }
        )
    )
    keys = [c.key for c in g.claims(GPT, {"tenant": "t1", "key": "k1"}, 100, 50)]
    assert keys == [
        "openai|requests",
        "openai/gpt-4o|tenant=t1|tokens",
        "*|key=k1|model=openai/gpt-4o|requests",
    ]
    assert [c.key for c in g.claims(MINI, {}, 1, 1)] == [
        "openai|requests",
        "*|key=|model=openai/gpt-4o-mini|requests",
    ]
    tokens = g.claims(GPT, {"tenant": "t1"}, 100, 50)[1]
    assert tokens.amount == 150 and tokens.limit == 1000


def test_fixed_claims_are_per_deployment() -> None:
    """Request claims keyed by nothing per call are made once per deployment."""
    g = RateLimitGate(
        RateLimitSettings(limits={"*": LimitRule(requests_per_minute=10, per=["model"])})
    )
    for _ in range(2):
        assert [c.key for c in g.claims(GPT, {}, 1, 1)] == ["*|model=openai/gpt-4o|requests"]
        assert [c.key for c in g.claims(MINI, {}, 1, 1)] == ["*|model=openai/gpt-4o-mini|requests"]


async def test_gate_reserves_then_corrects_by_usage() -> None:
    g = RateLimitGate(
        RateLimitSettings(mode="reject", limits={"openai/*": LimitRule(tokens_per_minute=300)})
    )
    a = Attempt(GPT)
    await g.acquire(Ctx(inputs=100, outputs=100), a)
    assert g.stats()["ratelimit"]["buckets"]["openai/*|tokens"]["used"] == 200
    g.release(Ctx(), a, Outcome(usage=Usage(input_tokens=90, output_tokens=10)))
    assert g.stats()["ratelimit"]["buckets"]["openai/*|tokens"]["used"] == 100
    b = Attempt(GPT)
    await g.acquire(Ctx(inputs=100, outputs=100), b)  # fits only thanks to the refund
    with pytest.raises(RefusedError) as info:
        await g.acquire(Ctx(inputs=100, outputs=100), Attempt(GPT))
    assert info.value.kind == "rate_limit" and info.value.retry_after is not None
    assert info.value.provider == "openai" and info.value.model == "gpt-4o"


async def test_a_refused_attempt_gives_everything_back() -> None:
    g = RateLimitGate(
        RateLimitSettings(mode="reject", limits={"openai/*": LimitRule(requests_per_minute=1)})
    )
    a = Attempt(GPT)
    await g.acquire(Ctx(), a)
    g.release(Ctx(), a, Outcome(status="refused"))
    await g.acquire(Ctx(), Attempt(GPT))


async def test_an_error_without_usage_keeps_the_input_only() -> None:
    g = RateLimitGate(
        RateLimitSettings(mode="reject", limits={"openai/*": LimitRule(tokens_per_minute=1000)})
    )
    a = Attempt(GPT)
    await g.acquire(Ctx(inputs=100, outputs=400), a)
    g.release(Ctx(), a, Outcome(status="error"))
    assert g.stats()["ratelimit"]["buckets"]["openai/*|tokens"]["used"] == 100


async def test_too_large_a_request_is_refused_without_retry_after() -> None:
    g = RateLimitGate(
        RateLimitSettings(mode="wait", limits={"openai/*": LimitRule(tokens_per_minute=100)})
    )
    with pytest.raises(RefusedError, match="larger than the limit") as info:
        await g.acquire(Ctx(inputs=100, outputs=100), Attempt(GPT))
    assert info.value.retry_after is None


async def test_learns_from_headers_and_backs_off_after_429() -> None:
    g = RateLimitGate(RateLimitSettings(mode="reject"))
    a = Attempt(GPT)
    await g.acquire(Ctx(), a)  # nothing known yet: passes
    g.release(
        Ctx(),
        a,
        Outcome(
            headers={
                "x-ratelimit-limit-requests": "100",
                "x-ratelimit-remaining-requests": "1",
                "x-ratelimit-reset-requests": "30s",
            }
        ),
    )
    await g.acquire(Ctx(), Attempt(GPT))  # the one left
    with pytest.raises(RefusedError) as info:
        await g.acquire(Ctx(), Attempt(GPT))
    assert info.value.retry_after is not None and 25 < info.value.retry_after <= 30
    await g.acquire(Ctx(), Attempt(MINI))  # another model is not held
    stats = g.stats()
    row = stats["deployments"]["openai/gpt-4o"]["ratelimit"]["requests"]
    assert row["limit"] == 100 and row["remaining"] == 0
    b = Attempt(MINI)
    await g.acquire(Ctx(), b)
    g.release(Ctx(), b, Outcome(status="error", error=RateLimitError("slow down", retry_after=20)))
    with pytest.raises(RefusedError) as later:
        await g.acquire(Ctx(), Attempt(MINI))
    assert later.value.retry_after is not None and 15 < later.value.retry_after <= 20


def test_idle_windows_are_forgotten() -> None:
    store = MemoryStore()
    for i in range(store.SWEEP_EVERY - 1):
        store.take([claim(f"tenant-{i}", window=1)], 0.0)
    assert len(store) == store.SWEEP_EVERY - 1
    store.take([claim("late", window=1)], 5.0)  # the sweep: every other window is idle
    assert len(store) == 1


# ---------------------------------------------------------------------- scoped rules


def test_a_rule_scoped_to_a_key_applies_to_that_key_only() -> None:
    g = RateLimitGate(
        RateLimitSettings(
            limits={
                "key:team": LimitRule(pattern="*", key="team", requests_per_minute=2),
                "tenant:t": LimitRule(pattern="openai", tenant="t", tokens_per_minute=500),
            }
        )
    )
    assert [c.key for c in g.claims(GPT, {"key": "team", "tenant": "t"}, 1, 1)] == [
        "key:team|requests",
        "tenant:t|tokens",
    ]
    assert [c.key for c in g.claims(GPT, {"key": "other"}, 1, 1)] == []
    assert [c.key for c in g.claims(GPT, {"key": "team"}, 1, 1)] == ["key:team|requests"]


async def test_a_rule_of_its_own_mode_refuses_while_the_others_wait() -> None:
    g = RateLimitGate(
        RateLimitSettings(
            mode="wait",
            limits={
                "openai": LimitRule(requests_per_minute=100),
                "key:team": LimitRule(
                    pattern="*", key="team", requests_per_minute=1, mode="reject"
                ),
            },
        )
    )
    await g.acquire(Ctx(metadata={"key": "team"}), Attempt(GPT))
    started = time.monotonic()
    with pytest.raises(RefusedError) as info:
        await g.acquire(Ctx(metadata={"key": "team"}), Attempt(GPT))
    assert time.monotonic() - started < 0.5  # refused at once, not waited for
    assert info.value.retry_after is not None and 55 < info.value.retry_after <= 60
    assert "key:team|requests" in str(info.value)
    await g.acquire(Ctx(metadata={"key": "other"}), Attempt(GPT))  # not that key's limit
