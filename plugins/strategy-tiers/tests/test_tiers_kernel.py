"""tiers through a real kernel: the best tier first, ordered within by another
strategy; a lower tier only as fallback."""

from __future__ import annotations

from collections import Counter
from typing import Any

import llmkernel_mock.plugin
import llmkernel_strategy_round_robin.plugin
import llmkernel_strategy_tiers.plugin
from llmkernel import Kernel
from llmkernel.errors import ServerError

PLUGINS = [
    llmkernel_mock.plugin,
    llmkernel_strategy_tiers.plugin,
    llmkernel_strategy_round_robin.plugin,
]


def kernel() -> Kernel:
    config: dict[str, Any] = {
        "providers": {name: {"type": "mock"} for name in ("g1", "g2", "s1")},
        "models": {
            "smart": [
                {"target": "s1/chat", "tier": "silver"},
                {"target": "g1/chat", "tier": "gold"},
                {"target": "g2/chat", "tier": "gold"},
            ]
        },
        "routing": {
            "strategy": "tiers",
            "tiers": {"ranking": ["gold", "silver"], "within": "round-robin"},
        },
        "retry": {"attempts": 1, "initial_wait": 0, "max_wait": 0, "jitter": 0},
    }
    return Kernel.from_config(config, plugins=PLUGINS, entry_points=False)


def test_the_gold_tier_serves_in_turn_and_silver_is_the_fallback() -> None:
    with kernel() as k:
        served = Counter(k.chat("smart", "hi").provider for _ in range(10))
        assert served == {"g1": 5, "g2": 5}
        k.provider("g1").enqueue(ServerError("down"))  # type: ignore[attr-defined]
        answers = {k.chat("smart", "hi").provider for _ in range(2)}
        assert answers == {"g2"}  # g1 failed once: the other gold one, never silver
        k.provider("g1").enqueue(ServerError("down"))  # type: ignore[attr-defined]
        k.provider("g2").enqueue(ServerError("down"))  # type: ignore[attr-defined]
        assert k.chat("smart", "hi").provider == "s1"
