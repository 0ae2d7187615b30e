"""Cache entries, key records and breaker state on a real redis-server (the
primitives that the cache, the gateway's keys and routing use)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from llmkernel_redis.breakers import SharedBreakers
from llmkernel_redis.cache import SharedCache
from llmkernel_redis.keystore import SharedKeys
from llmkernel_redis.link import RedisLink
from llmkernel_redis.testing import RedisServer


@pytest.fixture
async def link(redis_server: RedisServer) -> RedisLink:
    link = RedisLink(redis_server.url, timeout=5)
    yield link
    await link.aclose()


async def test_cache_entries_per_namespace_with_a_ttl(
    link: RedisLink, redis_server: RedisServer
) -> None:
    one, two = SharedCache(link, "t:"), SharedCache(RedisLink(redis_server.url, timeout=5), "t:")
    await one.set("tenant-a", "k1", b"answer", ttl=0.3)
    assert await two.get("tenant-a", "k1") == b"answer"  # stored by one, a hit on another
    assert await two.get("tenant-b", "k1") is None  # namespaces never cross
    await one.set("tenant-b", "k1", b"other", ttl=60)
    await one.set("*", "k2", b"star", ttl=60)  # a tenant named like a pattern
    assert await one.clear("*") == 1
    assert await one.get("tenant-b", "k1") == b"other"
    admin = aioredis.Redis.from_url(redis_server.url)
    assert all([await admin.pttl(k) > 0 async for k in admin.scan_iter(match="t:*")])
    await asyncio.sleep(0.35)
    assert await two.get("tenant-a", "k1") is None  # expired
    assert await one.delete("tenant-b", "k1") is True
    with pytest.raises(ValueError, match="finite positive ttl"):
        await one.set("a", "b", b"c", ttl=float("inf"))
    await admin.aclose()
    await two.link.aclose()


async def test_key_records_found_by_hash_and_versioned(link: RedisLink) -> None:
    keys, other = SharedKeys(link, "t:"), SharedKeys(link, "t:")
    assert await other.version() == 0
    v1 = await keys.put("team-a", {"name": "team-a", "tenant": "a"}, ["hash-1"])
    assert await other.version() == v1 == 1
    assert await other.by_hash("hash-1") == ("team-a", {"name": "team-a", "tenant": "a"})
    # a rotation with a grace period: the old and the new hash both lead to it
    await keys.put(
        "team-a", {"name": "team-a", "tenant": "a", "rotated": True}, ["hash-1", "hash-2"]
    )
    assert (await other.by_hash("hash-1"))[1]["rotated"] is True  # type: ignore[index]
    assert await other.by_hash("hash-2") is not None
    await keys.put("team-a", {"name": "team-a", "tenant": "a"}, ["hash-2"])  # grace over
    assert await other.by_hash("hash-1") is None
    await keys.put("team-b", {"name": "team-b"}, ["hash-3"])
    version, records = await other.all()
    assert version == 4 and set(records) == {"team-a", "team-b"}
    assert await keys.delete("team-a") == 5  # revoked
    assert await other.by_hash("hash-2") is None and await other.get("team-a") is None
    assert await other.get("team-b") == {"name": "team-b"}


async def test_a_change_is_published(link: RedisLink, redis_server: RedisServer) -> None:
    keys = SharedKeys(link, "t:")
    listener = aioredis.Redis.from_url(redis_server.url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(keys.channel)
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    await keys.put("k", {"name": "k"}, ["h"])
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message is not None and message["data"] == b"1"
    await pubsub.aclose()
    await listener.aclose()


async def test_breakers_open_half_open_and_probe(
    link: RedisLink, redis_server: RedisServer
) -> None:
    a, b = SharedBreakers(link, "t:", owner="a"), SharedBreakers(link, "t:", owner="b")
    assert (await b.states(["p/m"]))["p/m"].state == "closed"
    await a.open("p/m", 0.3, reason="5 failures in 10 s", half_open=30)
    state = (await b.states(["p/m"]))["p/m"]
    assert state.state == "open" and 0.2 < state.remaining <= 0.3
    assert state.reason == "5 failures in 10 s"
    await b.open("p/m", 0.1)  # a shorter opening never shortens it
    assert (await a.states(["p/m"]))["p/m"].remaining > 0.15
    await asyncio.sleep(0.32)
    assert (await b.states(["p/m"]))["p/m"].state == "half_open"
    assert await a.claim_probe("p/m", 5) is True
    assert await b.claim_probe("p/m", 5) is False  # one probe for the fleet
    await a.close("p/m")
    assert (await b.states(["p/m"]))["p/m"].state == "closed"
    await a.put_health("p/m", False, "HTTP 503", ttl=60)
    health = await b.health(["p/m", "q/n"])
    assert set(health) == {"p/m"} and health["p/m"]["ok"] is False and health["p/m"]["by"] == "a"
    await a.open("q/n", 10)
    admin = aioredis.Redis.from_url(redis_server.url)
    assert all([await admin.pttl(k) > 0 async for k in admin.scan_iter(match="t:*")])
    await admin.aclose()


async def test_breakers_probe_claims_view_and_close(link: RedisLink) -> None:
    a, b = SharedBreakers(link, "t:", owner="a"), SharedBreakers(link, "t:", owner="b")
    assert SharedBreakers(link, "t:").owner != SharedBreakers(link, "t:").owner  # per instance
    await a.open("p/m", 0.05, reason="boom", half_open=30)
    await asyncio.sleep(0.06)
    assert await a.claim_probe("p/m", 0.3) is True
    assert await a.claim_probe("p/m", 0.3) is True  # its own claim: renewed, not refused
    assert await b.claim_probe("p/m", 0.3) is False
    states, _ = await b.view(["p/m"])
    assert states["p/m"].state == "half_open" and states["p/m"].probe == "a"
    assert states["p/m"].by == "a" and states["p/m"].reason == "boom"
    assert await b.renew_probe("p/m", 5) is False  # not b's to renew
    assert await a.renew_probe("p/m", 0.3) is True
    assert await b.release_probe("p/m") is False  # not b's to give back
    assert await a.release_probe("p/m") is True
    assert await b.claim_probe("p/m", 0.2) is True  # given back: b may probe
    await asyncio.sleep(0.25)
    assert await a.claim_probe("p/m", 5) is True  # b's claim expired (b died)
    assert await b.renew_probe("p/m", 5) is False  # an expired claim is not renewed
    await a.open("p/m", 10, reason="probe failed")  # a failed probe: open again, claim over
    states, _ = await b.view(["p/m"])
    assert states["p/m"].state == "open" and states["p/m"].probe == ""
    assert 9 < states["p/m"].remaining <= 10
    assert await b.close("p/m") is False  # an opening still running is kept
    assert (await a.states(["p/m"]))["p/m"].state == "open"
    await a.open("q/n", 0.01)
    await asyncio.sleep(0.02)
    assert await a.claim_probe("q/n", 5) is True
    assert await a.close("q/n") is True  # the probe succeeded: closed for all
    await a.put_healths({"p": (False, "HTTP 503"), "q": (True, "")}, ttl=60)
    states, health = await b.view(["q/n"], ["p", "q", "r"])
    assert states["q/n"].state == "closed" and states["q/n"].probe == ""
    assert set(health) == {"p", "q"} and health["p"]["ok"] is False
    assert health["p"]["detail"] == "HTTP 503" and health["p"]["by"] == "a"
    assert await b.claim_probe("q/n", 5) is True  # no claim left behind by the close
