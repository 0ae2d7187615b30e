from __future__ import annotations

from collections import Counter

import pytest

from llmkernel.routing import Candidate
from llmkernel_strategy_random import RandomSettings, RandomStrategy

CANDIDATES = [Candidate(provider=p, model="m") for p in "abcd"]


def test_uniform_first_picks_with_a_fixed_seed():
    strategy = RandomStrategy(settings=RandomSettings(seed=5))
    firsts = Counter()
    for _ in range(8_000):
        chain = strategy.select(None, CANDIDATES)
        assert sorted(chain, key=lambda c: c.provider) == CANDIDATES
        firsts[chain[0].provider] += 1
    for name in "abcd":
        assert firsts[name] / 8_000 == pytest.approx(0.25, abs=0.02)


def test_same_seed_same_orders():
    one = RandomStrategy(settings=RandomSettings(seed=9))
    two = RandomStrategy(settings=RandomSettings(seed=9))
    assert [one.select(None, CANDIDATES) for _ in range(20)] == [
        two.select(None, CANDIDATES) for _ in range(20)
    ]
