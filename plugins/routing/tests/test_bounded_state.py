"""Per-deployment state only for deployments the configuration defines: any other
``provider/model`` a client sends is counted under ``other``, so new names cannot
grow the statistics, the breakers or ``kernel.stats()`` (issue 26, point 6)."""

from __future__ import annotations

import json
import random
import string

import pytest

from llmkernel import Kernel
from llmkernel.errors import ServerError
from llmkernel_routing import routing_for
from llmkernel_routing.state import OTHER

CONFIG = {
    "providers": {"mock": {"type": "mock"}, "spare": {"type": "mock", "models": ["big"]}},
    "models": {"fast": ["mock/echo", "spare/big"]},
    "retry": {"attempts": 1},
    "plugin": {"routing": {"breaker": {"failures": 2}}},
}


def names(n: int) -> list[str]:
    rng = random.Random(26)
    return ["".join(rng.choices(string.ascii_lowercase, k=14)) for _ in range(n)]


def test_made_up_model_names_share_one_bucket_and_no_breaker() -> None:
    with Kernel.from_config(CONFIG) as kernel:
        kernel.chat("fast", "hi")
        for name in names(1000):
            kernel.chat(f"mock/{name}", "hi")  # the mock answers any name
        routing = routing_for(kernel)
        assert set(routing.deployments) == {"mock/echo", OTHER}
        assert set(routing.breakers) <= {"mock/echo", "spare/big"}
        assert routing.deployments[OTHER].requests == 1000
        snapshot = kernel.stats()["deployments"]
        assert set(snapshot) <= {"mock/echo", OTHER}
        assert "breaker" not in snapshot[OTHER]
        assert len(json.dumps(snapshot)) < 20_000


def test_failures_of_unknown_models_never_open_a_breaker() -> None:
    with Kernel.from_config(CONFIG) as kernel:
        mock = kernel.provider("mock")
        for name in names(5):
            mock.enqueue(ServerError("down"))  # type: ignore[attr-defined]
            with pytest.raises(ServerError):
                kernel.chat(f"mock/{name}", "hi")
        assert not routing_for(kernel).breakers
        # a configured deployment still gets a breaker of its own, and it opens
        for _ in range(2):
            mock.enqueue(ServerError("down"))  # type: ignore[attr-defined]
            with pytest.raises(ServerError):
                kernel.chat("mock/echo", "hi")
        breaker = routing_for(kernel).breakers["mock/echo"]
        assert breaker.state == "open"
        # and an unknown model of the same provider still goes through
        assert kernel.chat("mock/anything", "hi").provider == "mock"


def test_known_names_are_the_aliases_targets_and_declared_models() -> None:
    with Kernel.from_config(CONFIG) as kernel:
        known = kernel.models.names
        assert known.model("fast") == "fast"
        assert known.deployment("mock", "echo") == "mock/echo"  # declared by the mock
        assert known.deployment("spare", "big") == "spare/big"  # an alias target
        assert known.deployment("mock", "made-up") is None
        assert known.model("nosuch/x") is None
        assert known.provider("spare") == "spare"
        assert known.provider("nosuch") is None
