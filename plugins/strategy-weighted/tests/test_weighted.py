from __future__ import annotations

from collections import Counter

import pytest

from llmkernel.errors import ConfigError
from llmkernel.routing import Candidate
from llmkernel_strategy_weighted import Weighted, WeightedSettings, make

A = Candidate(provider="a", model="m")
B = Candidate(provider="b", model="m")
C = Candidate(provider="c", model="m")


@pytest.mark.parametrize("weights", [(3, 1, 0), (6, 3, 1), (1, 1, 1)])
def test_first_pick_shares_follow_the_weights(weights):
    settings = WeightedSettings(
        seed=42, weights={"a/m": weights[0], "b/m": weights[1], "c/m": weights[2]}
    )
    strategy = Weighted(settings=settings)
    draws = 20_000
    firsts = Counter()
    for _ in range(draws):
        chain = strategy.select(None, [A, B, C])
        assert sorted(c.provider for c in chain) == ["a", "b", "c"]  # a whole chain
        firsts[chain[0].provider] += 1
    total = sum(weights)
    for name, weight in zip("abc", weights, strict=True):
        assert firsts[name] / draws == pytest.approx(weight / total, abs=0.015)


def test_zero_weight_is_tried_last_and_same_seed_same_order():
    settings = WeightedSettings(seed=1, weights={"c/m": 0})
    one, two = Weighted(settings=settings), Weighted(settings=settings)
    for _ in range(200):
        chain = one.select(None, [C, A, B])
        assert chain[-1] == C
        assert chain == two.select(None, [C, A, B])


def test_second_pick_is_weighted_among_the_rest():
    strategy = Weighted(settings=WeightedSettings(seed=3, weights={"a/m": 8, "b/m": 1, "c/m": 1}))
    seconds = Counter()
    for _ in range(10_000):
        chain = strategy.select(None, [A, B, C])
        if chain[0] == A:
            seconds[chain[1].provider] += 1
    share = seconds["b"] / (seconds["b"] + seconds["c"])
    assert share == pytest.approx(0.5, abs=0.03)


def test_settings_are_strict():
    with pytest.raises(ConfigError, match="weigths"):
        make(None, {"weigths": {}})
    with pytest.raises(ConfigError, match="negative"):
        make(None, {"weights": {"a/m": -1}})
