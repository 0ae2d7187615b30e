"""The latency strategy's order on plain statistics, with a controlled clock."""

from __future__ import annotations

from types import SimpleNamespace

from llmkernel.routing import Candidate
from llmkernel_routing import Routing, RoutingSettings
from llmkernel_strategy_latency import Latency, LatencySettings

FAST = Candidate(provider="fast", model="m")
SLOW = Candidate(provider="slow", model="m")
CHAT = SimpleNamespace(kind="chat")
STREAM = SimpleNamespace(kind="stream")


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def make(**settings):
    clock = Clock()
    routing = Routing(settings=RoutingSettings(ewma_alpha=0.5), clock=clock)
    return Latency(routing=routing, settings=LatencySettings(**settings)), routing, clock


def test_untried_first_then_the_faster():
    strategy, routing, _ = make()
    routing.attempt_ended(SLOW, status="ok", latency=1.0)
    assert strategy.select(CHAT, [SLOW, FAST]) == [FAST, SLOW]  # never measured: explore
    routing.attempt_ended(FAST, status="ok", latency=0.1)
    assert strategy.select(CHAT, [SLOW, FAST]) == [FAST, SLOW]
    assert strategy.select(CHAT, [FAST, SLOW]) == [FAST, SLOW]


def test_moves_away_when_the_fast_one_degrades():
    strategy, routing, _ = make(half_life=0)
    routing.attempt_ended(FAST, status="ok", latency=0.1)
    routing.attempt_ended(SLOW, status="ok", latency=0.5)
    assert strategy.select(CHAT, [SLOW, FAST])[0] == FAST
    for _ in range(3):
        routing.attempt_ended(FAST, status="ok", latency=2.0)
    assert strategy.select(CHAT, [SLOW, FAST])[0] == SLOW
    routing.attempt_ended(FAST, status="error", kind="timeout", latency=0.01)  # penalized
    assert strategy.select(CHAT, [SLOW, FAST])[0] == SLOW


def test_decay_gives_a_recovered_candidate_another_try():
    strategy, routing, clock = make(half_life=10)
    routing.attempt_ended(SLOW, status="ok", latency=1.0)  # at t=0
    for t in range(0, 40, 5):  # the fast one keeps getting traffic
        clock.now = float(t)
        routing.attempt_ended(FAST, status="ok", latency=0.2)
    clock.now = 20.0
    assert strategy.select(CHAT, [SLOW, FAST])[0] == FAST
    clock.now = 40.0  # the slow estimate is four half-lives old: 1.0 -> 0.0625 < 0.2 * 0.7
    assert strategy.select(CHAT, [SLOW, FAST])[0] == SLOW


def test_streams_use_time_to_first_token():
    strategy, routing, _ = make()
    # FAST answers whole calls fast but streams start slowly; SLOW the reverse
    routing.attempt_ended(FAST, status="ok", latency=0.1)
    routing.attempt_ended(SLOW, status="ok", latency=2.0)
    routing.attempt_ended(FAST, status="ok", stream=True, latency=3, first_event_latency=0.9)
    routing.attempt_ended(SLOW, status="ok", stream=True, latency=3, first_event_latency=0.05)
    assert strategy.select(CHAT, [SLOW, FAST])[0] == FAST
    assert strategy.select(STREAM, [SLOW, FAST])[0] == SLOW
    forced = Latency(routing=routing, settings=LatencySettings(metric="latency"))
    assert forced.select(STREAM, [SLOW, FAST])[0] == FAST
