"""Budgets of a fleet over a real redis-server: two kernels (each with its own
ledger, as on two machines) never overspend a budget together; an emptied Redis
is reseeded from the ledgers and never lowers the spend; Redis killed mid-run:
no crash, each falls back to budget/N, and coordination resumes when it is back;
``fail_closed`` refuses naming Redis; a SIGKILLed holder's reservation expires."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from llmkernel import Kernel
from llmkernel.errors import BudgetExceededError, ConfigError, RefusedError
from llmkernel_budgets.fleet import FleetBudgets
from llmkernel_budgets.plugin import budgets_for, fleet_for
from llmkernel_ledger.plugin import ledger_for
from llmkernel_redis.testing import RedisServer

pytest.importorskip("llmkernel_mock")

COUNTER = "cap|total"
#: what one call costs and reserves at these prices (the mock's fixed reply)
COST, WORST = Decimal("0.027"), Decimal("0.047")


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMKERNEL_REDIS_URL", raising=False)


def config(
    home: Path, url: str, amount: str, *, redis: dict[str, Any] | None = None, **budgets: Any
) -> dict[str, Any]:
    return {
        "providers": {"sim": {"type": "mock", "latency": 0.005}},
        "prices": {"sim/priced": {"input": "1000", "output": "1000"}},
        "redis": {
            "url": url,
            "timeout": 5,
            "connect_timeout": 5,
            "retry_interval": 0.2,
            "instances": 2,
            **(redis or {}),
        },
        "plugin": {
            # breakers per instance: these tests are about budgets (and closing a
            # kernel whose fleet breakers follow Redis once hung in the full suite,
            # waiting for that task)
            "routing": {"shared": False},
            "ledger": {"path": str(home / "ledger.db")},
            "budgets": {"limits": [{"name": "cap", "amount": amount}], "slab": 4, **budgets},
        },
    }


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Kernel]]:
    kernels: list[Kernel] = []

    def make(name: str, url: str, amount: str, **kw: Any) -> Kernel:
        home = tmp_path / name  # as another machine: its own ledger
        home.mkdir(exist_ok=True)
        kernel = Kernel.from_config(config(home, url, amount, **kw))
        kernels.append(kernel)
        return kernel

    yield make
    for kernel in kernels:
        await kernel.aclose()


def fleet(kernel: Kernel) -> FleetBudgets:
    found = fleet_for(kernel)
    assert found is not None
    return found


async def calls(kernels: list[Kernel], n: int) -> tuple[int, list[RefusedError]]:
    """``n`` concurrent calls spread over ``kernels``: (answered, refusals)."""
    refused: list[RefusedError] = []

    async def one(i: int) -> bool:
        try:
            await kernels[i % len(kernels)].achat(
                model="sim/priced", messages="hello there", max_tokens=20
            )
        except RefusedError as exc:
            refused.append(exc)
            return False
        return True

    answered = sum(await asyncio.gather(*(one(i) for i in range(n))))
    return answered, refused


async def settled(kernels: list[Kernel]) -> list[Decimal]:
    """Each kernel's ledger total once its settlements and rows are in."""
    totals = []
    for kernel in kernels:
        await fleet(kernel).drain()
        ledger = ledger_for(kernel)
        await asyncio.to_thread(ledger.writer.flush)
        totals.append(ledger.store.total())
    return totals


async def redis_spent(kernel: Kernel) -> Decimal:
    (state,) = await fleet(kernel).budgets.read([COUNTER])
    return state.spent


@pytest.mark.parametrize(
    ("amount", "slab"),
    [
        ("0.30", 4),  # under two slabs from the limit: every call reserved exactly
        ("1.00", 2),  # slabs leased from Redis, calls served from memory until near it
    ],
)
async def test_two_instances_never_overspend_together(
    redis_server: RedisServer, make: Callable[..., Kernel], amount: str, slab: int
) -> None:
    kernels = [make(name, redis_server.url, amount, slab=slab) for name in ("one", "two")]
    answered, refused = await calls(kernels, 200)
    totals = await settled(kernels)
    limit = Decimal(amount)
    assert sum(totals) <= limit  # alone, each would have spent the whole amount
    # the budget was used (refusals count what is in flight and the leases)
    assert answered == sum(totals) / COST and sum(totals) > limit * Decimal("0.7")
    # Redis calls besides one per refusal (each asked Redis before it was refused)
    redis_calls = sum(fleet(k).link.calls for k in kernels) - len(refused)
    if slab == 2:  # a settlement per call, and a lease now and then
        assert redis_calls < 1.7 * answered
    else:  # a reservation and a settlement per call
        assert redis_calls >= 2 * answered
    assert all(t > 0 for t in totals)  # both served
    assert refused and all(isinstance(e, BudgetExceededError) for e in refused)
    assert "fleet-wide" in str(refused[0]) and refused[0].limit == "cap"
    assert await redis_spent(kernels[0]) == sum(totals)  # Redis and the ledgers agree
    stats = kernels[0].stats()["budgets"]
    assert stats["shared"] == "ok" and stats["unsent"] == 0


async def test_an_emptied_redis_is_reseeded_from_the_ledgers(
    redis_server: RedisServer, make: Callable[..., Kernel]
) -> None:
    kernels = [make(name, redis_server.url, "0.30") for name in ("one", "two")]
    await calls(kernels, 6)
    totals = await settled(kernels)
    assert await redis_spent(kernels[0]) == sum(totals) == 6 * COST
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    assert await redis_spent(kernels[0]) == 0
    # each instance raises Redis to its own ledger's part (at start, periodically,
    # after an outage); twice changes nothing
    for kernel in (*kernels, *kernels):
        await fleet(kernel).resync()
    assert await redis_spent(kernels[0]) == 6 * COST
    # a restarted instance reseeds at its first call: still not lowered
    await client.flushall()
    await client.aclose()
    again = [make(name, redis_server.url, "0.30") for name in ("one", "two")]
    answered, _ = await calls(again, 40)
    totals = await settled(again)
    assert sum(totals) <= Decimal("0.30")
    assert answered == (sum(totals) - 6 * COST) / COST
    assert await redis_spent(again[0]) == sum(totals)


async def test_redis_killed_mid_run_then_back(
    redis_server: RedisServer, make: Callable[..., Kernel], logs: list[dict[str, Any]]
) -> None:
    # (slab_ttl: how long an instance keeps reserving locally after an outage, a
    # quarter of it and two retry intervals, while every instance reseeds Redis)
    kernels = [make(name, redis_server.url, "0.60", slab_ttl=2) for name in ("one", "two")]
    await calls(kernels, 4)  # coordinated: 2 each
    before = await settled(kernels)
    assert before == [2 * COST, 2 * COST]

    redis_server.kill()
    answered, refused = await calls(kernels, 60)
    totals = await settled(kernels)
    # each alone, on its ledger, at most 0.60 / 2 (instances = 2)
    assert all(t <= Decimal("0.30") for t in totals), totals
    assert answered == (sum(totals) - sum(before)) / COST > 0
    assert refused and "Redis is away" in str(refused[0])
    assert kernels[0].stats()["budgets"]["shared"] == "degraded"
    assert kernels[0].stats()["budgets"]["unsent"] > 0  # what Redis did not take
    degraded = [e for e in logs if e["event"] == "llmkernel.budgets.degraded"]
    assert len(degraded) == 2  # once per instance, not per call

    redis_server.start()  # empty, as a restart without persistence
    for _ in range(100):  # the next call that reaches Redis brings it back
        await asyncio.sleep(0.25)
        await calls(kernels, 2)
        if all(k.stats()["budgets"]["shared"] == "ok" for k in kernels):
            break
    assert all(k.stats()["budgets"]["shared"] == "ok" for k in kernels)
    totals = await settled(kernels)
    # what was spent meanwhile reached Redis: once each, nothing lost
    assert await redis_spent(kernels[0]) == sum(totals)
    assert all(k.stats()["budgets"]["unsent"] == 0 for k in kernels)
    # coordinated again: the fleet spends up to 0.60 in total, no more
    await calls(kernels, 60)
    totals = await settled(kernels)
    assert sum(totals) <= Decimal("0.60") and sum(totals) > Decimal("0.60") - WORST - COST
    assert await redis_spent(kernels[0]) == sum(totals)


async def test_fail_closed_refuses_naming_redis(
    redis_server: RedisServer, make: Callable[..., Kernel]
) -> None:
    # slab = 0: every call asks Redis (one covered by a slab leased before the
    # outage is served until the instance notices Redis gone)
    kernel = make("one", redis_server.url, "1", slab=0, redis={"fail_closed": True})
    await calls([kernel], 2)
    redis_server.kill()
    answered, refused = await calls([kernel], 5)
    assert answered == 0 and len(refused) == 5
    error = refused[0]
    assert error.kind == "unavailable" and not isinstance(error, BudgetExceededError)
    assert "shared budgets are unavailable (Redis:" in str(error)
    assert "fail_closed = true" in str(error)
    assert error.retry_after == 0.2


async def test_shared_false_keeps_the_budget_local(
    redis_server: RedisServer, make: Callable[..., Kernel]
) -> None:
    kernel = make("one", redis_server.url, "1", shared=False)
    assert fleet_for(kernel) is None
    store = budgets_for(kernel)
    assert store is not None and store.divisor == 1
    answered, _ = await calls([kernel], 3)
    assert answered == 3


def test_a_wrong_shared_value_is_refused_naming_the_key(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="shared"):
        Kernel.from_config(config(tmp_path, redis_server.url, "1", shared="yes"))


async def test_a_killed_holders_reservation_expires(
    redis_server: RedisServer, make: Callable[..., Kernel], tmp_path: Path
) -> None:
    """A process reserves (exactly: ``slab = 0``, as near a limit) and is SIGKILLed
    mid-call: its reservation blocks the budget until ``reservation_ttl``, then the
    money is back."""
    amount = format(WORST + WORST / 2, "f")  # room for one call's worst case
    cfg = config(tmp_path / "held", redis_server.url, amount, slab=0, reservation_ttl=5)
    cfg["providers"]["sim"]["latency"] = 60
    (tmp_path / "held").mkdir()
    code = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from llmkernel import Kernel
        from llmkernel_budgets.plugin import fleet_for

        async def main():
            kernel = Kernel.from_config({cfg!r})
            call = asyncio.ensure_future(
                kernel.achat(model="sim/priced", messages="hello there", max_tokens=20)
            )
            budgets = fleet_for(kernel).budgets
            while (await budgets.read([{COUNTER!r}]))[0].reservations == 0:
                await asyncio.sleep(0.01)
            print("reserved", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    holder = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert holder.returncode == -signal.SIGKILL, holder.stderr
    assert holder.stdout.strip() == "reserved"
    kernel = make("mine", redis_server.url, amount, slab=0)
    (state,) = await fleet(kernel).budgets.read([COUNTER])
    assert state.reserved == WORST and state.reservations == 1
    answered, refused = await calls([kernel], 1)
    assert answered == 0 and isinstance(refused[0], BudgetExceededError)
    assert refused[0].spent == 0  # refused for the dead holder's reservation alone
    for _ in range(100):  # expires 5 s after it was made
        await asyncio.sleep(0.1)
        if (await fleet(kernel).budgets.read([COUNTER]))[0].reservations == 0:
            break
    answered, _ = await calls([kernel], 1)
    assert answered == 1  # the money came back
    await settled([kernel])
    assert await redis_spent(kernel) == COST
