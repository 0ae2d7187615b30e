"""A key's budget over two gateway processes (each with its own ledger, data,
cache, state and config directories, as on two machines) and one real
redis-server: 200 concurrent requests split across both never overspend it in
total (each would alone), Redis and the two ledgers agree; with ``[redis]
fail_closed = true`` and Redis gone, a clear 503 naming Redis."""

from __future__ import annotations

import asyncio
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


def config(url: str, ledger: Path, *, redis: str = "", budgets: str = "slab = 2\n") -> str:
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
        + f"budget = {{ total = {BUDGET} }}\n"
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
