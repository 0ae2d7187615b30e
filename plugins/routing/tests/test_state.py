"""The routing state on plain data: counts, EWMAs, the breaker through enter/leave,
the timeline and the snapshot."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llmkernel.routing import Candidate
from llmkernel_routing import BreakerSettings, Routing, RoutingSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


A = Candidate(provider="a", model="m", provider_type="mock")
B = Candidate(provider="b", model="m", provider_type="mock")


def make(**settings) -> tuple[Routing, Clock]:
    clock = Clock()
    wall = Clock()
    wall.now = 1_700_000_000.0
    return Routing(settings=RoutingSettings(**settings), clock=clock, wall=wall), clock


def test_attempts_are_counted_per_deployment():
    routing, _ = make()
    routing.attempt_ended(
        A, status="ok", latency=0.2, input_tokens=10, output_tokens=5, cost=Decimal("0.01")
    )
    routing.attempt_ended(A, status="error", kind="server", message="boom", latency=0.1)
    routing.attempt_ended(A, status="error", kind="server", message="boom again")
    routing.attempt_ended(A, status="refused", kind="breaker")
    routing.attempt_ended(
        A,
        status="ok",
        stream=True,
        latency=1.0,
        first_event_latency=0.05,
        input_tokens=1,
        output_tokens=1,
        cost=None,
    )
    snap = routing.snapshot()["deployments"]["a/m"]
    assert snap["requests"] == 4  # the refused one never left
    assert snap["successes"] == 2
    assert snap["errors"] == 2
    assert snap["errors_by_kind"] == {"server": 2}
    assert snap["refused_by_kind"] == {"breaker": 1}
    assert snap["input_tokens"] == 11
    assert snap["output_tokens"] == 6
    assert snap["cost"] == "0.01"
    assert snap["unpriced"] == 1
    assert snap["latency_ms"]["count"] == 2
    assert snap["ttft_ms"]["p50"] == pytest.approx(50.0, rel=0.01)
    assert snap["last_error"]["kind"] == "server"
    assert snap["last_error"]["message"] == "boom again"
    assert snap["timeline"][0]["requests"] == 4
    assert snap["breaker"]["state"] == "closed"


def test_ewma_feeds_latency_for_calls_and_ttft_for_streams_and_penalizes_failures():
    routing, _ = make(ewma_alpha=0.5, failure_penalty=2.0)
    routing.attempt_ended(A, status="ok", latency=1.0)
    routing.attempt_ended(A, status="ok", latency=0.0)
    stats = routing.stats_for(A)
    assert stats.ewma_latency == pytest.approx(0.5)
    routing.attempt_ended(A, status="error", kind="server", latency=0.01)
    assert stats.ewma_latency == pytest.approx(1.25)  # counted as 2 s
    routing.attempt_ended(A, status="error", kind="invalid_request", latency=0.01)
    assert stats.ewma_latency == pytest.approx(1.25)  # the request's fault: no sample
    routing.attempt_ended(A, status="ok", stream=True, latency=3.0, first_event_latency=0.1)
    assert stats.ewma_ttft == pytest.approx(0.1)
    assert stats.ewma_latency == pytest.approx(1.25)


def test_enter_and_leave_count_in_flight_and_drive_the_breaker():
    routing, clock = make(breaker=BreakerSettings(failures=2, cooldown=10))
    assert routing.enter(A) is True
    assert routing.enter(A) is True
    assert routing.stats_for(A).in_flight == 2
    routing.leave(A, True, status="error", kind="server")
    routing.leave(A, True, status="error", kind="network")
    assert routing.stats_for(A).in_flight == 0
    assert routing.enter(A) is None  # open
    assert routing.retry_after(A) == pytest.approx(10.0)
    assert not routing.healthy(A)
    assert routing.enter(B) is True  # other deployments are not affected
    clock.now += 10
    assert routing.enter(A) == "probe"
    assert routing.enter(A) is None  # one probe only
    routing.leave(A, "probe", status="ok")
    assert routing.enter(A) is True
    snap = routing.snapshot()["deployments"]["a/m"]["breaker"]
    assert snap["state"] == "closed"
    assert snap["opens"] == 1


def test_cancelled_and_refused_are_no_verdict_abandoned_streams_are_alive():
    routing, clock = make(breaker=BreakerSettings(failures=1, cooldown=1))
    routing.enter(A)
    routing.leave(A, True, status="error", kind="timeout")
    clock.now += 1
    assert routing.enter(A) == "probe"
    routing.leave(A, "probe", status="cancelled")
    assert routing.enter(A) == "probe"  # the slot is free again
    routing.leave(A, "probe", status="refused")
    assert routing.enter(A) == "probe"
    routing.leave(A, "probe", status="abandoned")
    assert routing.breaker_for(A).state == "closed"


def test_breaker_can_be_disabled():
    routing, _ = make(breaker=BreakerSettings(enabled=False, failures=1))
    for _ in range(5):
        assert routing.enter(A) is True
        routing.leave(A, True, status="error", kind="server")
    assert routing.enter(A) is True


def test_timeline_keeps_the_last_hour_per_minute():
    routing, _ = make(timeline_minutes=60)
    wall = routing.wall
    assert isinstance(wall, Clock)
    for minute in range(90):
        wall.now = 1_700_000_000.0 + minute * 60
        routing.attempt_ended(A, status="ok", latency=0.1, cost=Decimal("0.001"))
        routing.attempt_ended(B, status="error", kind="server")
    snap = routing.snapshot()
    timeline = snap["routing"]["timeline"]
    assert len(timeline) == 60
    assert all(m["requests"] == 2 and m["successes"] == 1 and m["errors"] == 1 for m in timeline)
    assert [m["minute"] for m in timeline] == sorted(m["minute"] for m in timeline)
    assert len(snap["deployments"]["a/m"]["timeline"]) == 60
    assert len(routing.stats_for(A).timeline._slots) <= 60  # a ring, not a log


def test_snapshot_is_plain_data():
    import json

    routing, _ = make()
    routing.attempt_ended(A, status="ok", latency=0.1, cost=Decimal("0.5"))
    routing.calls.record(status="ok", attempts=1)
    json.dumps(routing.snapshot())


def test_healthy_reads_breaker_and_recent_failures():
    routing, _ = make()
    wall = routing.wall
    assert routing.healthy(A)
    routing.attempt_ended(A, status="error", kind="server")
    assert not routing.healthy(A)
    wall.now += 10
    assert not routing.healthy(A, recent=30)
    wall.now += 30
    assert routing.healthy(A, recent=30)  # long ago: try it again
    routing.attempt_ended(A, status="ok", latency=0.1)
    assert routing.healthy(A)


def test_the_token_ceiling_bounds_a_count_from_above() -> None:
    from llmkernel.testing.scripted import make_kernel
    from llmkernel_routing.state import token_ceiling

    kernel = make_kernel(["x"])
    text = "naïve café " * 50
    request = kernel.build_request("a/m1", [{"role": "user", "content": text}])
    estimate = kernel.models.count(request, kernel.models.resolve("a/m1")[0]).tokens
    assert token_ceiling(request) >= len(text.encode("utf-8")) >= estimate
