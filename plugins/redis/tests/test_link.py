"""The link against a real redis-server: calls, timeouts, a kill and a restart."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis

from llmkernel_redis.link import RedisLink, Unavailable
from llmkernel_redis.testing import RedisServer


async def ping(client: aioredis.Redis) -> bool:
    return bool(await client.ping())


async def test_a_call_and_its_stats(redis_server: RedisServer) -> None:
    link = RedisLink(redis_server.url, timeout=5)
    assert await link.call(ping) is True
    stats = link.stats()
    assert stats["state"] == "ok" and stats["calls"] == 1 and stats["reason"] is None
    await link.aclose()


async def test_a_unix_socket(redis_unix_server: RedisServer) -> None:
    assert redis_unix_server.url.startswith("unix://")
    link = RedisLink(redis_unix_server.url, timeout=5)
    assert await link.call(ping) is True
    await link.aclose()


async def test_killed_then_restarted_degrades_once_and_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    link = RedisLink(redis_server.url, retry_interval=0.2, timeout=5)
    recovered: list[float] = []

    async def listener() -> None:
        recovered.append(time.monotonic())

    link.on_recover(listener)
    assert await link.call(ping)
    redis_server.kill()
    with caplog.at_level(logging.INFO, logger="llmkernel"):
        for _ in range(5):
            with pytest.raises(Unavailable):
                await link.call(ping)
    events = [r.getMessage() for r in caplog.records]
    assert sum("llmkernel.redis.degraded" in e for e in events) == 1, events
    stats = link.stats()
    assert stats["state"] == "degraded" and stats["outages"] == 1
    assert "Connection" in stats["reason"] or "Error" in stats["reason"]
    assert stats["failures"] == 1  # the other four did not even try: the breaker is open
    redis_server.start()
    await asyncio.sleep(0.25)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="llmkernel"):
        assert await link.call(ping)
    events = [r.getMessage() for r in caplog.records]
    assert len(events) == 1 and "llmkernel.redis.recovered" in events[0], events
    assert link.stats()["state"] == "ok" and len(recovered) == 1
    assert await link.call(ping)
    await link.aclose()


async def test_a_server_that_does_not_answer_in_time(redis_server: RedisServer) -> None:
    link = RedisLink(redis_server.url, timeout=0.1, retry_interval=0.1)
    assert await link.call(ping)
    admin = aioredis.Redis.from_url(redis_server.url)
    await admin.execute_command("CLIENT", "PAUSE", "600", "ALL")
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await link.call(ping)
    assert time.monotonic() - started < 0.5  # the call's timeout, not the pause's end
    assert link.state == "degraded" and "Timeout" in (link.reason or "")
    await asyncio.sleep(0.7)
    assert await link.call(ping)  # the next try after retry_interval
    assert link.state == "ok"
    await admin.aclose()
    await link.aclose()


def test_a_pool_per_event_loop(redis_server: RedisServer) -> None:
    link = RedisLink(redis_server.url, timeout=5)
    clients = []

    async def one() -> None:
        clients.append(link.client())
        assert await link.call(ping)

    asyncio.run(one())
    asyncio.run(one())
    assert clients[0] is not clients[1]


async def test_nothing_listening(redis_server: RedisServer) -> None:
    redis_server.stop()
    link = RedisLink(redis_server.url, timeout=5)
    with pytest.raises(Unavailable) as info:
        await link.call(ping)
    assert link.state == "degraded" and info.value.reason == link.reason


async def test_the_password_stays_out_of_the_reason(redis_server: RedisServer) -> None:
    url = f"redis://user:pw-{'x' * 12}@127.0.0.1:{redis_server.port}/0"
    link = RedisLink(url, timeout=5)
    with pytest.raises(Unavailable):  # the server has no such user
        await link.call(ping)
    assert "pw-xxxx" not in (link.reason or "") and "pw-xxxx" not in repr(link)
    await link.aclose()
