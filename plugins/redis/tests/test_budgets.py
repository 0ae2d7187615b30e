"""Budget primitives on a real redis-server: all-or-nothing reservations, idempotent
settlement, expiry after a SIGKILLed holder, reseeding that never lowers, slab
leases."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest

from llmkernel_redis.budgets import CounterState, Lease, Refused, SharedBudgets, to_micros
from llmkernel_redis.link import RedisLink, Unavailable
from llmkernel_redis.testing import RedisServer

D = Decimal


@pytest.fixture
async def budgets(redis_server: RedisServer) -> SharedBudgets:
    link = RedisLink(redis_server.url, timeout=5)
    yield SharedBudgets(link, "t:")
    await link.aclose()


def test_micro_dollars_round_the_safe_way() -> None:
    assert to_micros(D("0.0000011")) == 2  # a cost or reservation: up
    assert to_micros(D("0.0000019"), up=False) == 1  # a limit: down
    assert to_micros(D("12.345678")) == 12_345_678


async def test_a_reservation_is_all_or_nothing(budgets: SharedBudgets) -> None:
    limits = [("team|2026-12", D("1.00"), D("0.40")), ("key=a|2026-12", D("0.50"), D("0.40"))]
    assert await budgets.reserve("r1", limits, ttl=60) is None
    refused = await budgets.reserve("r2", limits, ttl=60)
    assert isinstance(refused, Refused) and refused.counter == "key=a|2026-12"
    assert refused.reserved == D("0.40")
    team, key = await budgets.read(["team|2026-12", "key=a|2026-12"])
    assert (team.reserved, key.reserved) == (D("0.40"), D("0.40"))  # r2 charged nothing
    assert await budgets.reserve("r1", limits, ttl=60) is None  # a retry of r1: no change
    assert (await budgets.read(["team|2026-12"]))[0].reserved == D("0.40")


async def test_settling_twice_changes_nothing(budgets: SharedBudgets) -> None:
    counters = [("c|total", D("1"), D("0.30"))]
    assert await budgets.reserve("r", counters, ttl=60) is None
    assert await budgets.settle("r", [("c|total", D("0.123456"))], source="ledger-a") is True
    assert await budgets.settle("r", [("c|total", D("0.123456"))], source="ledger-a") is False
    (state,) = await budgets.read(["c|total"])
    assert (state.spent, state.reserved, state.reservations) == (D("0.123456"), 0, 0)


async def test_a_settlement_after_its_reservation_expired_still_counts(
    budgets: SharedBudgets,
) -> None:
    assert await budgets.reserve("slow", [("s|total", D("1"), D("0.5"))], ttl=0.1) is None
    await asyncio.sleep(0.15)
    assert await budgets.settle("slow", [("s|total", D("0.2"))], source="l") is True
    (state,) = await budgets.read(["s|total"])
    assert (state.spent, state.reserved) == (D("0.2"), 0)


async def test_never_overspent_under_200_concurrent_reservations(budgets: SharedBudgets) -> None:
    limit = [("hot|total", D("1.00"), D("0.01"))]
    got = await asyncio.gather(*(budgets.reserve(f"r{i}", limit, ttl=60) for i in range(200)))
    assert sum(r is None for r in got) == 100
    (state,) = await budgets.read(["hot|total"])
    assert state.reserved == D("1.00") and state.reservations == 100


async def test_the_reservation_of_a_killed_holder_expires(
    budgets: SharedBudgets, redis_server: RedisServer
) -> None:
    code = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from decimal import Decimal
        from llmkernel_redis.budgets import SharedBudgets
        from llmkernel_redis.link import RedisLink

        async def main():
            budgets = SharedBudgets(RedisLink({redis_server.url!r}, timeout=2), "t:")
            held = [("k|total", Decimal("1"), Decimal("0.9"))]
            got = await budgets.reserve("held", held, ttl=1.0)
            assert got is None
            print("reserved", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    holder = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert holder.returncode == -signal.SIGKILL and holder.stdout.strip() == "reserved"
    refused = await budgets.reserve("mine", [("k|total", D("1"), D("0.5"))], ttl=60)
    assert isinstance(refused, Refused) and refused.reserved == D("0.9")
    await asyncio.sleep(1.05)
    assert await budgets.reserve("mine", [("k|total", D("1"), D("0.5"))], ttl=60) is None
    (state,) = await budgets.read(["k|total"])
    assert (state.reserved, state.reservations) == (D("0.5"), 1)


async def test_reseeding_never_lowers(budgets: SharedBudgets) -> None:
    counter = "m|2026-12"
    assert await budgets.settle("a", [(counter, D("0.30"))], source="ledger-a")
    assert await budgets.reseed([(counter, D("0.10"))], source="ledger-a") == (D("0.30"),)
    assert await budgets.reseed([(counter, D("0.45"))], source="ledger-a") == (D("0.45"),)
    # another instance's own ledger adds its part; a shared ledger would use one source
    assert await budgets.reseed([(counter, D("0.20"))], source="ledger-b") == (D("0.65"),)
    assert await budgets.reseed([(counter, D("0.20"))], source="ledger-b") == (D("0.65"),)
    assert await budgets.settle("b", [(counter, D("0.05"))], source="ledger-b")
    assert await budgets.reseed([(counter, D("0.25"))], source="ledger-b") == (D("0.70"),)


async def test_an_emptied_redis_is_reseeded(
    budgets: SharedBudgets, redis_server: RedisServer
) -> None:
    assert await budgets.settle("a", [("e|total", D("0.75"))], source="l")
    redis_server.kill()
    redis_server.start()
    assert (await _read_when_back(budgets, "e|total")).spent == 0  # it came back empty
    assert await budgets.reseed([("e|total", D("0.75"))], source="l") == (D("0.75"),)
    refused = await budgets.reserve("x", [("e|total", D("1"), D("0.30"))], ttl=60)
    assert isinstance(refused, Refused) and refused.spent == D("0.75")


async def _read_when_back(budgets: SharedBudgets, counter: str) -> CounterState:
    """The first call may find the old server's connection gone (the link turns
    degraded, then tries again after its retry interval)."""
    for _ in range(50):
        try:
            return (await budgets.read([counter]))[0]
        except Unavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("redis did not come back")


async def test_slab_leases(budgets: SharedBudgets) -> None:
    counters = [("s|total", D("10"), D("0"))]
    lease = await budgets.lease(
        "me", "call1", counters, worst=D("0.1"), slab=D("1"), lease_ttl=60, reservation_ttl=60
    )
    assert lease == Lease(granted=(D("1.1"),), exact=(False,))
    (state,) = await budgets.read(["s|total"])
    assert (state.reserved, state.reservations) == (D("1.1"), 1)
    # another owner sees the lease as reserved
    other = await budgets.lease(
        "you", "c2", [("s|total", D("10"), D("0"))], worst=D("4"), slab=D("5"),
        lease_ttl=60, reservation_ttl=60,
    )  # fmt: skip
    assert other == Lease(granted=(D("0"),), exact=(True,))  # room 8.9 < 2 slabs: exact
    (state,) = await budgets.read(["s|total"])
    assert state.reserved == D("5.1")  # 1.1 + the exact 4 (its lease holds its need, 0)
    refused = await budgets.lease(
        "you", "c3", [("s|total", D("10"), D("0"))], worst=D("5"), slab=D("1"),
        lease_ttl=60, reservation_ttl=60,
    )  # fmt: skip
    assert isinstance(refused, Refused)
    # a slab call settles: its cost into the spend, its share out of the lease
    assert await budgets.settle(
        "call1", [("s|total", D("0.05"))], source="l", lease="me", shares=[D("0.05")]
    )
    (state,) = await budgets.read(["s|total"])
    assert (state.spent, state.reserved) == (D("0.05"), D("5.05"))
    # renew: keep, shrink to what is in flight, or give back
    assert await budgets.renew("me", [("s|total", None)], lease_ttl=60) == (D("1.05"),)
    assert await budgets.renew("me", [("s|total", D("0.2"))], lease_ttl=60) == (D("0.2"),)
    assert await budgets.renew("me", [("s|total", D("0"))], lease_ttl=60) == (D("0"),)
    assert (await budgets.read(["s|total"]))[0].reserved == D("4")


async def test_an_expired_lease_renews_as_zero(budgets: SharedBudgets) -> None:
    got = await budgets.lease(
        "gone", "c", [("x|total", D("10"), D("0"))], worst=D("0.1"), slab=D("1"),
        lease_ttl=0.1, reservation_ttl=60,
    )  # fmt: skip
    assert isinstance(got, Lease)
    await asyncio.sleep(0.15)
    assert await budgets.renew("gone", [("x|total", None)], lease_ttl=60) == (D("0"),)


async def test_every_key_has_a_ttl(budgets: SharedBudgets, redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    await budgets.reserve("r", [("t1|total", D("1"), D("0.1"))], ttl=60)
    await budgets.settle("r", [("t1|total", D("0.1"))], source="l")
    await budgets.lease(
        "o", "c", [("t2|total", D("10"), D("0"))], worst=D("0.1"), slab=D("1"),
        lease_ttl=60, reservation_ttl=60,
    )  # fmt: skip
    await budgets.reseed([("t3|total", D("1"))], source="l")
    admin = aioredis.Redis.from_url(redis_server.url)
    names = [k async for k in admin.scan_iter(match="t:*")]
    assert len(names) >= 5
    ttls = [await admin.pttl(k) for k in names]
    assert all(ttl > 0 for ttl in ttls), dict(zip(names, ttls, strict=True))
    await admin.aclose()
