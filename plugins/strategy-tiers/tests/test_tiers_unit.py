from __future__ import annotations

import pytest

from llmkernel.errors import ConfigError
from llmkernel.routing import Candidate
from llmkernel_strategy_tiers import Tiers, TiersSettings, make

G1 = Candidate(provider="g1", model="m")
G2 = Candidate(provider="g2", model="m")
S1 = Candidate(provider="s1", model="m")
X = Candidate(provider="x", model="m")

SETTINGS = TiersSettings(
    ranking=["gold", "silver"], tiers={"g1/m": "gold", "g2/m": "gold", "s1/m": "silver"}
)


class Reverse:
    def select(self, ctx, candidates):
        return list(reversed(candidates))


def test_best_tier_first_untiered_last():
    assert Tiers(settings=SETTINGS).select(None, [X, S1, G1, G2]) == [G1, G2, S1, X]


def test_another_strategy_orders_within_a_tier():
    assert Tiers(settings=SETTINGS, inner=Reverse()).select(None, [X, S1, G1, G2]) == [
        G2,
        G1,
        S1,
        X,
    ]


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="ranking"):
        make(None, {})
    with pytest.raises(ConfigError, match="twice"):
        make(None, {"ranking": ["a", "a"]})
