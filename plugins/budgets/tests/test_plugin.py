"""The budgets plugin wired to a kernel: config, gate acquire/release, alerts to the
log, the hook and a webhook fake on 127.0.0.1.

The kernel's request pipeline calls the gate with its ``RequestContext``,
``Attempt`` and ``Outcome``; here small stand-ins with the same public attributes
drive the gate and the ledger hook directly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
import stamina

from llmkernel.config import Config
from llmkernel.errors import BudgetExceededError, ConfigError
from llmkernel.routing import Candidate
from llmkernel.types import Usage
from llmkernel_budgets import plugin as budgets_plugin
from llmkernel_budgets.gate import BudgetGate
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer
from llmkernel_ledger import plugin as ledger_plugin

CANDIDATE = Candidate(provider="sim", model="priced", provider_type="mock")
_ids = itertools.count()


@attrs.define
class Ctx:
    worst: Decimal | None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    id: str = attrs.field(factory=lambda: f"req-{next(_ids)}")
    kind: str = "chat"
    started_at: float = attrs.field(factory=time.time)
    attempts: list[Any] = attrs.field(factory=list)

    def worst_case_cost(self, candidate: Candidate) -> Decimal | None:
        return self.worst


@attrs.define
class Attempt:
    candidate: Candidate = CANDIDATE
    index: int = 1
    state: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Outcome:
    status: str = "ok"
    cost: Decimal | None = None
    usage: Usage = attrs.field(factory=Usage)
    candidate: Candidate | None = CANDIDATE
    error: Exception | None = None
    cached: bool = False
    latency: float | None = 0.01
    first_event_latency: float | None = None
    attempts: tuple[Any, ...] = ()


@pytest.fixture(autouse=True)
def _stamina_testing() -> Any:
    stamina.set_testing(True, attempts=3)
    yield
    stamina.set_testing(False)


class Hooks:
    def __init__(self) -> None:
        self.alerts: list[Any] = []

    def on_budget_alert(self, kernel: Any, alert: Any) -> None:
        self.alerts.append(alert)


class StubKernel:
    """What the plugins use of a kernel: config, hook, add_closer, close. (The real
    pipeline is exercised in test_kernel.py once the kernel has gates.)"""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.hook = Hooks()
        from llmkernel.lifecycle import Lifecycle

        self.lifecycle = Lifecycle(top=False)  # a kernel's, for the plugins' closers

    def close(self) -> None:
        for fn in reversed(self.lifecycle.closers):
            fn()


def kernel(tmp_path: Path, **budgets: Any) -> Any:
    config = Config.load(
        {
            "providers": {"sim": {"type": "mock"}},
            "plugin": {
                "ledger": {"path": str(tmp_path / "ledger.db")},
                "budgets": budgets,
            },
        }
    )
    k = StubKernel(config)
    ledger_plugin.configure(kernel=k, config=config)
    budgets_plugin.configure(kernel=k, config=config)
    return k


def gate_of(k: Any) -> BudgetGate:
    gate = budgets_plugin.provide_gate(k)
    assert isinstance(gate, BudgetGate)
    return gate


def run_call(k: Any, gate: BudgetGate, worst: Decimal, cost: Decimal | None, **meta: Any) -> None:
    """One call as the pipeline runs it: acquire, release, on_request_end."""
    ctx, attempt = Ctx(worst=worst, metadata=meta), Attempt()
    asyncio.run(gate.acquire(ctx, attempt))
    outcome = Outcome(cost=cost, status="ok" if cost is not None else "error")
    gate.release(ctx, attempt, outcome)
    ledger_plugin.on_request_end(k, ctx, outcome)
    # until the writer thread settles, the worst case stays reserved (conservative)
    ledger_plugin.ledger_for(k).writer.flush()


def test_no_limits_no_gate(tmp_path: Path) -> None:
    assert budgets_plugin.provide_gate(kernel(tmp_path)) is None


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="amount"):
        kernel(tmp_path, limits=[{"amount": "lots"}])
    with pytest.raises(ConfigError, match="perod"):
        kernel(tmp_path, limits=[{"amount": 1, "perod": "day"}])
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        kernel(tmp_path, limits=[{"amount": 1}], timezone="Mars/Olympus")


def test_gate_reserves_settles_and_refuses(tmp_path: Path) -> None:
    k = kernel(tmp_path, limits=[{"name": "cap", "amount": "1.00"}])
    gate = gate_of(k)
    for _ in range(3):
        run_call(k, gate, Decimal("0.30"), Decimal("0.25"))
    ledger = ledger_plugin.ledger_for(k)
    ledger.writer.flush()
    store = budgets_plugin.budgets_for(k)
    assert store is not None
    limit = store.limits[0]
    assert store.spent(limit) == Decimal("0.75")
    assert store.reserved(limit) == 0
    with pytest.raises(BudgetExceededError) as info:
        asyncio.run(gate.acquire(Ctx(worst=Decimal("0.30")), Attempt()))
    assert (info.value.limit, info.value.spent, info.value.amount) == (
        "cap",
        Decimal("0.75"),
        Decimal("1.00"),
    )
    # a failed attempt releases entirely: the budget is unchanged
    run_call(k, gate, Decimal("0.25"), None)
    ledger.writer.flush()
    assert store.spent(limit) == Decimal("0.75") and store.reserved(limit) == 0
    assert ledger.store.total() == store.spent(limit)
    k.close()


def test_gate_refuses_unpriced_unless_allowed(tmp_path: Path) -> None:
    k = kernel(tmp_path, limits=[{"amount": 5}])
    with pytest.raises(BudgetExceededError, match="unpriced"):
        asyncio.run(gate_of(k).acquire(Ctx(worst=None), Attempt()))
    lenient = kernel(tmp_path / "2", limits=[{"amount": 5}], allow_unpriced=True)
    asyncio.run(gate_of(lenient).acquire(Ctx(worst=None), Attempt()))


def test_per_tenant_limits_from_metadata(tmp_path: Path) -> None:
    k = kernel(tmp_path, limits=[{"name": "t", "amount": "0.5", "tenant": "*", "period": "day"}])
    gate = gate_of(k)
    run_call(k, gate, Decimal("0.5"), Decimal("0.5"), tenant="acme")
    ledger_plugin.ledger_for(k).writer.flush()
    with pytest.raises(BudgetExceededError):
        asyncio.run(gate.acquire(Ctx(worst=Decimal("0.1"), metadata={"tenant": "acme"}), Attempt()))
    asyncio.run(gate.acquire(Ctx(worst=Decimal("0.1"), metadata={"tenant": "globex"}), Attempt()))
    asyncio.run(gate.acquire(Ctx(worst=Decimal("9")), Attempt()))  # no tenant: not limited


def test_webhook_receives_each_alert_once(tmp_path: Path) -> None:
    with FakeServer() as server:
        # the first POST fails with a 503: retried, still delivered once
        server.expect("POST", "/hook", FakeResponse(status=503), FakeResponse(status=204))
        k = kernel(
            tmp_path,
            limits=[{"name": "cap", "amount": "1"}],
            webhook=f"{server.url}/hook",
        )
        gate = gate_of(k)
        for cost in ("0.3", "0.3", "0.1", "0.25"):  # 0.6 crosses 50%, 0.95 crosses 80%
            run_call(k, gate, Decimal("0.3"), Decimal(cost))
        k.close()  # flushes the ledger, then the webhook's queue
        posts = [json.loads(r.body) for r in server.requests_to("/hook")]
    assert [(a.limit, a.threshold) for a in k.hook.alerts] == [
        ("cap", Decimal("0.5")),
        ("cap", Decimal("0.8")),
    ]
    delivered = [p for p in posts]
    thresholds = [p["threshold"] for p in delivered]
    assert thresholds.count("0.5") == 2  # the 503, then its retry
    assert sorted(set(thresholds)) == ["0.5", "0.8"]
    assert delivered[-1] == {
        "event": "budget.alert",
        "limit": "cap",
        "counter": "cap|total",
        "period": "total",
        "threshold": "0.8",
        "spent": "0.95",
        "amount": "1",
    }


def test_cancelled_while_leasing_holds_nothing(tmp_path: Path) -> None:
    """A call cancelled while its slab is leased in a thread: the thread finishes the
    lease, and the call's worst case goes straight back (it is never released)."""
    k = kernel(tmp_path, limits=[{"name": "cap", "amount": "100"}], slab=5)
    gate = gate_of(k)
    store = budgets_plugin.budgets_for(k)
    assert store is not None

    async def main() -> None:
        store.ledger.lock.acquire()  # the lease's thread waits for it
        try:
            task = asyncio.create_task(gate.acquire(Ctx(worst=Decimal("0.01")), Attempt()))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            store.ledger.lock.release()
        for _ in range(1000):  # until the lease is done and the callback ran
            slabs = list(store._slabs.values())
            if slabs and slabs[0].granted > 0 and slabs[0].held == 0:
                break
            await asyncio.sleep(0.005)

    asyncio.run(main())
    limit = store.limits[0]
    assert store.reserved(limit) == Decimal("0.06")  # the slab, nothing held in it
    store.return_slabs()
    assert store.reserved(limit) == 0
    k.close()
