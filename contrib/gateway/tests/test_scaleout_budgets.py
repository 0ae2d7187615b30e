"""A key's budget over two gateway processes (each with its own ledger, data,
cache, state and config directories, as on two machines) and one real
redis-server: 200 concurrent requests split across both never overspend it in
total (each would alone), Redis and the two ledgers agree; with ``[redis]
fail_closed = true`` and Redis gone, a clear 503 naming Redis."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import httpx

from llmkernel_ledger.store import LedgerStore
from llmkernel_redis.budgets import SharedBudgets
from llmkernel_redis.link import RedisLink
from llmkernel_redis.testing import RedisServer, redis_server

from .conftest import Gateway, key_table

__all__ = ["redis_server"]

TEAM = "sk-team-budget-scaleout-0001"
BUDGET = Decimal("0.30")
COUNTER = "key:team:total|total"


def config(
    url: str, ledger: Path, *, redis: str = "", budgets: str = "slab = 2\n", budget: str = "0.30"
) -> str:
    return (
        f"""
[providers.mock]
type = "mock"
latency = 0.01

[prices."mock/echo"]
input = 1000
output = 1000

[redis]
url = "{url}"
timeout = 5
connect_timeout = 5
retry_interval = 0.2
instances = 2
{redis}
[plugin.ledger]
path = "{ledger}"

[plugin.budgets]
{budgets}
"""
        + key_table("team", TEAM)
        + f"budget = {{ total = {budget} }}\n"
    )


def start(url: str, tmp: Path, name: str, **extra: str) -> tuple[Gateway, Path]:
    home = tmp / name
    env = {f"XDG_{d}_HOME": str(home / d.lower()) for d in ("DATA", "CACHE", "STATE", "CONFIG")}
    home.mkdir()
    ledger = home / "ledger.db"
    return Gateway(config(url, ledger, **extra), home, env=env), ledger


async def burst(urls: list[str], n: int) -> list[httpx.Response]:
    headers = {"authorization": f"Bearer {TEAM}"}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=50)) as client:

        async def one(i: int) -> httpx.Response:
            body = {
                "model": "mock/echo",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": f"hello there {i}"}],
            }
            return await client.post(
                f"{urls[i % len(urls)]}/v1/chat/completions", json=body, headers=headers
            )

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def redis_spent(url: str) -> Decimal:
    link = RedisLink(url, timeout=5)
    try:
        (state,) = await SharedBudgets(link, "llmkernel:").read([COUNTER])
    finally:
        await link.aclose()
    return state.spent


def billed(ledger: Path) -> Decimal:
    store = LedgerStore(ledger)
    try:
        return store.total()
    finally:
        store.close()


def test_a_budget_over_two_instances_is_never_overspent(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    one, ledger_one = start(redis_server.url, tmp_path, "one")
    two, ledger_two = start(redis_server.url, tmp_path, "two")
    try:
        answers = asyncio.run(burst([one.url, two.url], 200))
    finally:
        one.stop()  # each gives its leases back and settles what is left
        two.stop()
    codes = [a.status_code for a in answers]
    assert set(codes) == {200, 429}, codes
    refusal = next(a for a in answers if a.status_code == 429).json()["error"]
    assert refusal["code"] == "budget_exceeded" and "key:team:total" in refusal["message"]
    totals = [billed(ledger_one), billed(ledger_two)]
    assert all(t > 0 for t in totals)  # both instances served
    assert sum(totals) <= BUDGET, totals  # in total, not 0.30 each
    assert sum(totals) > BUDGET / 2  # and the budget was used
    assert asyncio.run(redis_spent(redis_server.url)) == sum(totals)


def test_fail_closed_answers_503_naming_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    gateway, _ = start(
        redis_server.url, tmp_path, "one", redis="fail_closed = true\n", budgets="slab = 0\n"
    )
    try:
        (first,) = asyncio.run(burst([gateway.url], 1))
        assert first.status_code == 200
        redis_server.kill()
        answers = asyncio.run(burst([gateway.url], 3))
    finally:
        gateway.stop()
    assert [a.status_code for a in answers] == [503, 503, 503]
    error = answers[0].json()["error"]
    assert error["code"] == "shared_state_unavailable"
    assert "shared budgets are unavailable (Redis:" in error["message"]
    assert "fail_closed = true" in error["message"]
    assert answers[0].headers["retry-after"] == "1"


def test_redis_killed_mid_burst_then_back(redis_server: RedisServer, tmp_path: Path) -> None:
    """No 500 while Redis is away (each instance at most half the budget on its own
    ledger), and the budget is the fleet's again once it is back: what was spent
    meanwhile reached Redis, and the total never passes the budget."""
    # slab_ttl = 2: each instance is back on Redis 0.9 s after Redis is
    extra = {"budgets": "slab = 2\nslab_ttl = 2\n", "budget": "0.60"}
    one, ledger_one = start(redis_server.url, tmp_path, "one", **extra)
    two, ledger_two = start(redis_server.url, tmp_path, "two", **extra)
    urls = [one.url, two.url]
    try:
        first = asyncio.run(burst(urls, 4))
        assert [a.status_code for a in first] == [200] * 4
        redis_server.kill()
        during = asyncio.run(burst(urls, 100))
        codes = [a.status_code for a in during]
        assert set(codes) <= {200, 429} and 200 in codes, [a.text for a in during][:3]
        for gateway in (one, two):
            assert httpx.get(f"{gateway.url}/health").json()["status"] == "degraded"
        redis_server.start()  # empty
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.3)
            asyncio.run(burst(urls, 2))
            states = [httpx.get(f"{g.url}/health").json()["status"] for g in (one, two)]
            if states == ["ok", "ok"]:
                break
        assert states == ["ok", "ok"]
        time.sleep(1.5)  # each instance's wait for the fleet's reseed
        after = asyncio.run(burst(urls, 100))
        assert {a.status_code for a in after} <= {200, 429}
    finally:
        one.stop()
        two.stop()
    totals = [billed(ledger_one), billed(ledger_two)]
    assert sum(totals) <= Decimal("0.60"), totals
    assert asyncio.run(redis_spent(redis_server.url)) == sum(totals)  # nothing lost or twice
