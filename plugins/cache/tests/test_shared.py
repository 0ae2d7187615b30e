"""Exact entries across a fleet ([redis]): an answer stored through one kernel (its
own memory and SQLite, as on another machine) is a hit on another; with Redis gone
the cache answers from memory and SQLite, and calls never fail for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import llmkernel_cache.plugin
import llmkernel_redis.plugin
from llmkernel import Kernel
from llmkernel.testing.scripted import ScriptedPlugin
from llmkernel_redis.testing import RedisServer, redis_server

__all__ = ["redis_server"]


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMKERNEL_REDIS_URL", raising=False)


def kernel(url: str, path: Path, **cache: Any) -> Kernel:
    config = {
        "providers": {"a": {"type": "scripted"}},
        "redis": {"url": url, "timeout": 5, "connect_timeout": 5, "retry_interval": 0.2},
        "plugin": {"cache": {"enabled": True, "path": str(path), "ttl": 60, **cache}},
    }
    plugins = [ScriptedPlugin(), llmkernel_cache.plugin, llmkernel_redis.plugin]
    return Kernel.from_config(config, plugins=plugins, entry_points=False)


async def test_stored_on_one_a_hit_on_another(redis_server: RedisServer, tmp_path: Path) -> None:
    one = kernel(redis_server.url, tmp_path / "one.db")
    two = kernel(redis_server.url, tmp_path / "two.db")
    try:
        first = await one.achat(model="a/m1", messages="what is shared?")
        assert not first.cached
        again = await two.achat(model="a/m1", messages="what is shared?")
        assert again.cached and again.cache_kind == "exact" and again.text == first.text
        assert again.cost == 0
        other_tenant = await two.achat(
            model="a/m1", messages="what is shared?", metadata={"tenant": "t2"}
        )
        assert not other_tenant.cached  # namespaces never cross instances either
        admin = aioredis.Redis.from_url(redis_server.url)
        names = [n async for n in admin.scan_iter(match="llmkernel:c1:*")]
        assert len(names) == 2 and all([await admin.pttl(n) > 0 for n in names])  # TTLs
        await admin.aclose()
        assert await one.cache.ainvalidate(  # type: ignore[union-attr]
            one.build_request("a/m1", "what is shared?")
        )
        three = kernel(redis_server.url, tmp_path / "three.db")
        try:
            assert not (await three.achat(model="a/m1", messages="what is shared?")).cached
        finally:
            await three.aclose()
    finally:
        await one.aclose()
        await two.aclose()


async def test_opted_out_stays_local(redis_server: RedisServer, tmp_path: Path) -> None:
    one = kernel(redis_server.url, tmp_path / "one.db", shared=False)
    two = kernel(redis_server.url, tmp_path / "two.db", shared=False)
    try:
        await one.achat(model="a/m1", messages="local only")
        assert not (await two.achat(model="a/m1", messages="local only")).cached
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_gone_memory_and_sqlite_still_answer(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    one = kernel(redis_server.url, tmp_path / "one.db")
    try:
        await one.achat(model="a/m1", messages="before")
        redis_server.kill()
        assert (await one.achat(model="a/m1", messages="before")).cached  # from memory
        fresh = await one.achat(model="a/m1", messages="during")  # no error: stored locally
        assert not fresh.cached
        assert (await one.achat(model="a/m1", messages="during")).cached
        assert one.stats()["redis"]["state"] == "degraded"
    finally:
        await one.aclose()
