"""What a caller learns from an open breaker, through a kernel and a fake upstream
on 127.0.0.1: the refusal keeps the upstream's last error, and a call with every
deployment left out knows they are down and until when."""

from __future__ import annotations

import pytest
import routing_wire as wire

import llmkernel_routing.plugin
from llmkernel import Kernel
from llmkernel.errors import NoCandidateLeftError, RefusedError, ServerError
from llmkernel_routing.gate import DeploymentUnavailable


@pytest.fixture
def exploding():
    with wire.NoDelayServer() as server:
        server.default = lambda request: wire.error(500, "upstream exploded")
        yield server


async def test_an_open_breaker_says_what_the_upstream_said_and_until_when(exploding) -> None:
    config = {
        "providers": {"a": {"type": "wire", "base_url": exploding.url}},
        # a deployment the config lists: only those have breakers (issue 26.6)
        "models": {"g": ["a/m"]},
        "retry": {"attempts": 3, "initial_wait": 0.0, "max_wait": 0.0, "jitter": 0.0},
        "plugin": {"routing": {"breaker": {"failures": 2, "cooldown": 30}}},
    }
    kernel = Kernel.from_config(
        config, plugins=[wire.WirePlugin(), llmkernel_routing.plugin], entry_points=False
    )
    async with kernel:
        with pytest.raises(RefusedError) as refused:  # 2 failures open it; the 3rd try
            await kernel.achat("a/m", "hi")
        with pytest.raises(NoCandidateLeftError) as left:  # the filter leaves it out
            await kernel.achat("a/m", "hi")
    message = str(refused.value)
    assert refused.value.kind == "breaker"
    assert "2 consecutive failures; last: ServerError: " in message
    assert "upstream exploded" in message
    (drop,) = left.value.dropped
    assert isinstance(drop.error, DeploymentUnavailable) and drop.error.kind == "breaker"
    assert drop.error.retry_after is not None and 25 < drop.error.retry_after <= 30
    assert "last: ServerError" in drop.reason
    assert not isinstance(drop.error, RefusedError | ServerError)  # no attempt was made
