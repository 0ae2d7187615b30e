"""The rate-limit script on a real redis-server: windows, all-or-nothing across
scopes, corrections, absorbing, versions side by side, a TTL on every key."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis.asyncio as aioredis

from llmkernel_redis.limits import RATELIMIT, SharedWindows, WindowClaim
from llmkernel_redis.link import RedisLink
from llmkernel_redis.scripts import Script
from llmkernel_redis.testing import RedisServer


@pytest.fixture
async def windows(redis_server: RedisServer) -> SharedWindows:
    link = RedisLink(redis_server.url, timeout=5)
    yield SharedWindows(link, "t:")
    await link.aclose()


def claim(bucket: str, limit: float | None, amount: float = 1, window: float = 60) -> WindowClaim:
    return WindowClaim(bucket=bucket, limit=limit, window=window, amount=amount)


async def test_never_more_than_the_limit_in_a_window(windows: SharedWindows) -> None:
    c = [claim("k|requests", 5, window=1.0)]
    got = [await windows.take(f"a{i}", c) for i in range(7)]
    assert [t.ok for t in got] == [True] * 5 + [False] * 2
    assert 0.9 < got[5].wait <= 1.0 and got[5].blocked_by == 0
    await asyncio.sleep(got[6].wait + 0.02)
    assert (await windows.take("b", c)).ok  # the five (taken together) left the window
    assert (await windows.state("k|requests")).used == 1


async def test_a_fractional_limit_admits_what_it_allows(windows: SharedWindows) -> None:
    # 100 per minute over 10 s is 16.67: 16 whole requests, as MemoryStore admits
    c = [claim("f|requests", 100 * 10 / 60, window=10)]
    assert sum([(await windows.take(f"a{i}", c)).ok for i in range(20)]) == 16


async def test_every_scope_or_none(windows: SharedWindows) -> None:
    scopes = [
        claim("key|requests", 10),
        claim("tenant|tokens", 100, 60),
        claim("model|requests", 10),
    ]
    assert (await windows.take("one", scopes)).ok
    got = await windows.take("two", [*scopes[:1], claim("tenant|tokens", 100, 50), scopes[2]])
    assert not got.ok and got.blocked_by == 1
    states = [await windows.state(c.bucket) for c in scopes]
    assert [s.used for s in states] == [1, 60, 1]  # the refused take charged nothing
    assert [s.admissions for s in states] == [1, 1, 1]


async def test_a_claim_larger_than_its_limit_never_fits(windows: SharedWindows) -> None:
    got = await windows.take("big", [claim("t|tokens", 100, 101)])
    assert not got.ok and math.isinf(got.wait)


async def test_a_take_retried_after_a_lost_answer_counts_once(windows: SharedWindows) -> None:
    c = [claim("r|requests", 10)]
    assert (await windows.take("same", c)).ok
    assert (await windows.take("same", c)).ok
    assert (await windows.state("r|requests")).used == 1


async def test_corrections_and_their_refunds(windows: SharedWindows) -> None:
    c = [claim("c|tokens", 1000, 600)]
    assert (await windows.take("x", c)).ok
    assert not (await windows.take("y", c)).ok
    await windows.correct("x", [("c|tokens", 60, 150)])  # used 150 of the 600 reserved
    assert (await windows.state("c|tokens")).used == 150
    assert (await windows.take("y", c)).ok
    await windows.correct("y", [("c|tokens", 60, 0)])  # never sent: all back
    state = await windows.state("c|tokens")
    assert (state.used, state.admissions) == (150, 1)
    await windows.correct("gone", [("c|tokens", 60, 999)])  # unknown: nothing
    assert (await windows.state("c|tokens")).used == 150


async def test_absorbing_what_was_admitted_elsewhere(windows: SharedWindows) -> None:
    assert (await windows.take("seen", [claim("a|requests", 10)])).ok
    entries = [
        ("seen", "a|requests", 1.0, 60.0, 1.0),  # its take had reached Redis: skipped
        ("local1", "a|requests", 5.0, 60.0, 1.0),
        ("local2", "a|requests", 59.5, 60.0, 1.0),
        ("old", "a|requests", 61.0, 60.0, 1.0),  # out of its window already
    ]
    assert await windows.absorb(entries) == 2
    assert await windows.absorb(entries) == 0  # twice changes nothing
    state = await windows.state("a|requests")
    assert (state.used, state.admissions) == (3, 3)
    await asyncio.sleep(0.6)  # local2 (admitted 59.5 s ago) leaves the window
    assert (await windows.take("n", [claim("a|requests", 10)])).ok
    assert (await windows.state("a|requests")).used == 3


async def test_block_and_observe(windows: SharedWindows) -> None:
    await windows.block("learned|p/m|requests", 0.3, 60)
    got = await windows.take("a", [claim("learned|p/m|requests", None)])
    assert not got.ok and 0.2 < got.wait <= 0.3
    await asyncio.sleep(0.32)
    assert (await windows.take("b", [claim("learned|p/m|requests", None)])).ok
    await windows.observe("learned|p/m|tokens", 1000, 100, 0.5, 60)  # 900 used until 0.5 s
    state = await windows.state("learned|p/m|tokens")
    assert (state.used, state.limit) == (900, 1000)
    assert not (await windows.take("c", [claim("learned|p/m|tokens", None, 200)])).ok
    assert (await windows.take("d", [claim("learned|p/m|tokens", None, 100)])).ok
    await asyncio.sleep(0.55)
    assert (await windows.take("e", [claim("learned|p/m|tokens", None, 800)])).ok


def _next_version(script: Script) -> Script:
    header = f"-- {script.name} v{script.version}"
    source = script.source.replace(header, f"-- {script.name} v{script.version + 1}", 1)
    return Script(name=script.name, version=script.version + 1, source=source)


async def test_two_versions_side_by_side(redis_server: RedisServer) -> None:
    newer = _next_version(RATELIMIT)
    assert newer.sha != RATELIMIT.sha
    link_old = RedisLink(redis_server.url, timeout=5)
    link_new = RedisLink(redis_server.url, timeout=5)
    old = SharedWindows(link_old, "t:")
    new = SharedWindows(link_new, "t:", script=newer)
    c = [claim("v|requests", 50)]
    got = await asyncio.gather(
        *(w.take(f"{i}", c) for i in range(200) for w in ((old, new)[i % 2],))
    )
    assert sum(t.ok for t in got) == 50
    assert sum(t.ok for i, t in enumerate(got) if i % 2) > 0  # both versions admitted
    assert sum(t.ok for i, t in enumerate(got) if not i % 2) > 0
    admin = aioredis.Redis.from_url(redis_server.url)
    assert await admin.script_exists(RATELIMIT.sha, newer.sha) == [True, True]
    await admin.script_flush()  # a restarted or flushed Redis: NOSCRIPT, loaded again
    assert not (await old.take("after", c)).ok
    for link in (link_old, link_new):
        await link.aclose()
    await admin.aclose()


async def test_every_key_has_a_ttl(windows: SharedWindows, redis_server: RedisServer) -> None:
    await windows.take("a", [claim("k|requests", 5), claim("k|tokens", 100, 10)])
    await windows.correct("a", [("k|tokens", 60, 3)])
    await windows.block("b|requests", 120, 60)
    await windows.observe("o|tokens", 100, 50, 10, 60)
    await windows.absorb([("z", "ab|requests", 1, 60, 1)])
    admin = aioredis.Redis.from_url(redis_server.url)
    names = [k async for k in admin.scan_iter(match="t:*")]
    assert len(names) >= 8
    ttls = {k: await admin.pttl(k) for k in names}
    assert all(0 < ttl <= 121_000 for ttl in ttls.values()), ttls
    assert ttls[b"t:rl1:b|requests"] > 61_000  # a block outlives the window
    await admin.aclose()
