"""Active health checks (off by default): a provider whose health() fails is left
out until a later check passes."""

from __future__ import annotations

import asyncio
from typing import Any

import llmkernel_mock.plugin
import llmkernel_routing.plugin
from llmkernel import Kernel
from llmkernel.types import Health
from llmkernel_routing.state import routing_for


def kernel(interval: float) -> Kernel:
    config: dict[str, Any] = {
        "providers": {"a": {"type": "mock"}, "b": {"type": "mock"}},
        "models": {"pair": ["a/chat", "b/chat"]},
        "plugin": {"routing": {"health_interval": interval, "health_timeout": 1.0}},
    }
    return Kernel.from_config(
        config, plugins=[llmkernel_mock.plugin, llmkernel_routing.plugin], entry_points=False
    )


async def test_off_by_default_no_check_runs() -> None:
    async with kernel(0.0) as k:
        await k.achat("pair", "hi")
        assert routing_for(k).health == {}


async def test_a_failing_health_check_leaves_the_provider_out_until_it_recovers() -> None:
    healthy = {"a": True}

    async with kernel(0.05) as k:
        sick = k.provider("a")

        async def health() -> Health:
            return Health(ok=healthy["a"], detail="ok" if healthy["a"] else "503 from /health")

        sick.health = health  # type: ignore[method-assign]
        assert (await k.achat("pair", "hi")).provider == "a"  # starts the checks
        healthy["a"] = False
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not routing_for(k).health.get("a", Health(ok=True)).ok:
                break
        response = await k.achat("pair", "hi")
        assert response.provider == "b"
        healthy["a"] = True
        for _ in range(100):
            await asyncio.sleep(0.02)
            if routing_for(k).health["a"].ok:
                break
        assert (await k.achat("pair", "hi")).provider == "a"
