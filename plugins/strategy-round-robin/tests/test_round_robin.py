from __future__ import annotations

from llmkernel.routing import Candidate
from llmkernel_strategy_round_robin import RoundRobin

A = Candidate(provider="a", model="m")
B = Candidate(provider="b", model="m")
C = Candidate(provider="c", model="m")


def test_each_call_starts_one_further_and_keeps_the_rest_as_fallbacks():
    strategy = RoundRobin()
    chains = [strategy.select(None, [A, B, C]) for _ in range(4)]
    assert chains == [[A, B, C], [B, C, A], [C, A, B], [A, B, C]]


def test_each_candidate_list_has_its_own_turn():
    strategy = RoundRobin()
    assert strategy.select(None, [A, B]) == [A, B]
    assert strategy.select(None, [A, C]) == [A, C]
    assert strategy.select(None, [A, B]) == [B, A]
    assert strategy.select(None, [A]) == [A]
    assert strategy.select(None, []) == []
