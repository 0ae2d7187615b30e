from __future__ import annotations

from llmkernel.routing import Candidate
from llmkernel_routing import Routing
from llmkernel_strategy_least_loaded import LeastLoaded, LeastLoadedSettings

A = Candidate(provider="a", model="m")
B = Candidate(provider="b", model="m")
C = Candidate(provider="c", model="m")


def test_fewest_in_flight_first_counted_by_the_gate():
    routing = Routing()
    strategy = LeastLoaded(routing=routing)
    for _ in range(3):
        routing.enter(A)
    routing.enter(B)
    assert strategy.select(None, [A, B, C]) == [C, B, A]
    routing.leave(A, True, status="ok")
    routing.leave(A, True, status="ok")
    routing.enter(C)
    routing.enter(C)
    # A 1, B 1, C 2: the tie between A and B takes turns
    firsts = {strategy.select(None, [A, B, C])[0].provider for _ in range(4)}
    assert firsts == {"a", "b"}
    assert all(strategy.select(None, [A, B, C])[-1] == C for _ in range(4))


def test_idle_candidates_take_turns():
    strategy = LeastLoaded(routing=Routing())
    firsts = [strategy.select(None, [A, B, C])[0].provider for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]


def test_weights_divide_the_load():
    routing = Routing()
    strategy = LeastLoaded(routing=routing, settings=LeastLoadedSettings(weights={"a/m": 4}))
    for _ in range(3):
        routing.enter(A)
    routing.enter(B)
    assert strategy.select(None, [A, B])[0] == A  # 3/4 < 1
