"""Breakers shared by a fleet ([redis]) on a real redis-server: a deployment whose
breaker opened on one kernel (its own process state, as on another machine) is
skipped by another within the refresh; opted out, each keeps its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import llmkernel_redis.plugin
import llmkernel_routing.plugin
from llmkernel import Kernel
from llmkernel.errors import ServerError
from llmkernel.testing.scripted import ScriptedPlugin
from llmkernel_redis.testing import RedisServer, redis_server
from llmkernel_routing.state import routing_for

__all__ = ["redis_server"]


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMKERNEL_REDIS_URL", raising=False)


def kernel(url: str, script: list[Any], **routing: Any) -> Kernel:
    config = {
        "retry": {"attempts": 1},
        "providers": {"a": {"type": "scripted", "script": script}, "b": {"type": "scripted"}},
        "models": {"m": ["a/m1", "b/m1"]},
        "redis": {"url": url, "timeout": 5, "connect_timeout": 5, "retry_interval": 0.2},
        "plugin": {"routing": {"breaker": {"failures": 1, "cooldown": 30}, **routing}},
    }
    plugins = [ScriptedPlugin(), llmkernel_routing.plugin, llmkernel_redis.plugin]
    return Kernel.from_config(config, plugins=plugins, entry_points=False)


async def served_by(k: Kernel) -> str:
    return (await k.achat(model="m", messages="hi")).provider


async def test_opened_on_one_skipped_by_the_other(redis_server: RedisServer) -> None:
    one = kernel(redis_server.url, [ServerError("upstream down", status=500)])
    two = kernel(redis_server.url, [])
    try:
        assert await served_by(two) == "a"  # closed everywhere; two follows the fleet now
        assert await served_by(one) == "b"  # a failed on one: its breaker opens, published
        assert routing_for(one).breaker_for("a/m1").state == "open"
        for _ in range(40):  # within the refresh (1 s)
            await asyncio.sleep(0.1)
            if routing_for(two).breaker_for("a/m1").state == "open":
                break
        breaker = routing_for(two).breaker_for("a/m1")
        assert breaker.state == "open" and breaker.reason.startswith("open on another instance")
        assert "upstream down" in breaker.reason
        assert await served_by(two) == "b"  # a is skipped on two without failing there
        assert not [r for r in scripted_requests(two, "a")[1:]]
    finally:
        await one.aclose()
        await two.aclose()


async def test_opted_out_keeps_its_own(redis_server: RedisServer) -> None:
    one = kernel(redis_server.url, [ServerError("upstream down", status=500)], shared=False)
    two = kernel(redis_server.url, [], shared=False)
    try:
        assert await served_by(two) == "a"
        assert await served_by(one) == "b"
        await asyncio.sleep(1.3)
        assert routing_for(two).breaker_for("a/m1").state == "closed"
        assert await served_by(two) == "a"
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_gone_breakers_stay_local(redis_server: RedisServer) -> None:
    one = kernel(redis_server.url, [ServerError("upstream down", status=500)])
    try:
        redis_server.kill()
        assert await served_by(one) == "b"  # no error for Redis: the local breaker opened
        assert routing_for(one).breaker_for("a/m1").state == "open"
        await asyncio.sleep(0.2)
        assert await served_by(one) == "b"
    finally:
        await one.aclose()


def scripted_requests(k: Kernel, name: str) -> list[Any]:
    from llmkernel.testing.scripted import scripted

    return scripted(k, name).requests
