"""Budget reservations against plain data: never over, across threads and processes;
ledger and budgets agree; alerts once per threshold per period."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from llmkernel.errors import BudgetExceededError
from llmkernel_budgets.limits import Limit, Scope, seconds_to_next_period
from llmkernel_budgets.store import Alert, BudgetStore
from llmkernel_ledger.store import LedgerRow, LedgerStore

WORST = Decimal("0.0123")
N = 37
NOW = 1_764_460_800.0  # 2025-11-30T00:00:00Z
SCOPE = Scope(provider="oa", model="gpt-4.1", tenant="acme", key="team-a")


def budgets(path: Path, *limits: Limit, **kw: object) -> BudgetStore:
    return BudgetStore(LedgerStore(path), limits, **kw)  # type: ignore[arg-type]


def total(amount: Decimal = WORST * N, **kw: object) -> Limit:
    return Limit(name="all", amount=amount, **kw)  # type: ignore[arg-type]


def test_200_threads_never_reserve_over_the_limit(tmp_path: Path) -> None:
    store = budgets(tmp_path / "b.db", total())
    granted: list[int] = []
    refused: list[BudgetExceededError] = []
    barrier = threading.Barrier(200)

    def call(i: int) -> None:
        barrier.wait()
        try:
            store.reserve(f"res{i}", f"req{i}", SCOPE, WORST, now=NOW)
            granted.append(i)
        except BudgetExceededError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(granted) == N
    assert len(refused) == 200 - N
    assert refused[0].limit == "all" and refused[0].amount == WORST * N
    assert store.reserved(total(), now=NOW) == WORST * N


CHILD = textwrap.dedent(
    """
    import sys, threading
    from decimal import Decimal
    from llmkernel.errors import BudgetExceededError
    from llmkernel_budgets.limits import Limit, Scope
    from llmkernel_budgets.store import BudgetStore
    from llmkernel_ledger.store import LedgerRow, LedgerStore

    path, prefix = sys.argv[1], sys.argv[2]
    worst = Decimal("0.0123")
    ledger = LedgerStore(path)
    store = BudgetStore(ledger, [Limit(name="all", amount=worst * 37)])
    scope = Scope(provider="oa", model="gpt-4.1")
    granted = []
    go = threading.Barrier(100)

    def call(i):
        go.wait()
        try:
            store.reserve(f"{prefix}{i}", f"{prefix}{i}", scope, worst, now=1764460800.0)
        except BudgetExceededError:
            return
        granted.append(i)
        # settle to the real cost, then the ledger records the call
        store.settle(f"{prefix}{i}", worst)
        ledger.write([LedgerRow(request_id=f"{prefix}{i}", ts=1764460800.0,
                                provider="oa", model="gpt-4.1", cost=worst)])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(100)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(len(granted))
    """
)


def test_two_processes_200_requests_never_over(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    limit = total()
    store = budgets(path, limit)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), prefix], stdout=subprocess.PIPE, text=True
        )
        for prefix in ("a", "b")
    ]
    granted = 0
    for child in children:
        out, _ = child.communicate(timeout=180)
        assert child.returncode == 0
        granted += int(out)
    assert granted == N
    # the ledger's settled costs and the budget's spend agree, with nothing left held
    assert store.ledger.total() == WORST * N
    assert store.spent(limit, now=NOW) == WORST * N
    assert store.reserved(limit, now=NOW) == 0


def test_settle_to_actual_cost_frees_the_difference(tmp_path: Path) -> None:
    limit = total(Decimal("1"))
    store = budgets(tmp_path / "b.db", limit)
    store.reserve("a", "ra", SCOPE, Decimal("0.6"), now=NOW)
    with pytest.raises(BudgetExceededError):
        store.reserve("b", "rb", SCOPE, Decimal("0.6"), now=NOW)
    store.settle("a", Decimal("0.1"))
    store.reserve("b", "rb", SCOPE, Decimal("0.6"), now=NOW)
    assert store.reserved(limit, now=NOW) == Decimal("0.7")
    store.settle("b", None)  # failed: released entirely
    assert store.reserved(limit, now=NOW) == Decimal("0.1")
    store.ledger.write(
        [
            LedgerRow(
                request_id="ra",
                ts=NOW,
                provider="oa",
                model="gpt-4.1",
                tenant="acme",
                key="team-a",
                cost=Decimal("0.1"),
            )
        ]
    )
    assert store.reserved(limit, now=NOW) == 0
    assert store.spent(limit, now=NOW) == Decimal("0.1")


def test_stale_reservations_expire(tmp_path: Path) -> None:
    store = budgets(tmp_path / "b.db", total(Decimal("1")), reservation_ttl=60)
    store.reserve("crashed", "r1", SCOPE, Decimal("1"), now=NOW)
    with pytest.raises(BudgetExceededError):
        store.reserve("next", "r2", SCOPE, Decimal("1"), now=NOW + 59)
    assert store.reserve("next", "r2", SCOPE, Decimal("1"), now=NOW + 61)


def test_expired_reservations_ignored_at_once_deleted_once_a_minute(tmp_path: Path) -> None:
    limit = total(Decimal("1"))
    store = budgets(tmp_path / "b.db", limit, reservation_ttl=10)

    def rows() -> int:
        return int(
            store.ledger.conn.execute("SELECT count(*) FROM budget_reservations").fetchone()[0]
        )

    store.reserve("crashed", "r1", SCOPE, Decimal("1"), now=NOW)
    assert store.reserve("next", "r2", SCOPE, Decimal("1"), now=NOW + 11)  # r1 expired
    assert rows() == 2  # not deleted yet: the last purge was 11 s ago
    assert store.reserved(limit, now=NOW + 11) == Decimal("1")
    with pytest.raises(BudgetExceededError):
        store.reserve("third", "r3", SCOPE, Decimal("0.5"), now=NOW + 12)
    assert store.reserve("later", "r4", SCOPE, Decimal("1"), now=NOW + 61)
    assert rows() == 1  # the purge of the next minute deleted both expired ones


def test_unpriced_refused_unless_allowed(tmp_path: Path) -> None:
    store = budgets(tmp_path / "b.db", total(Decimal("1")))
    with pytest.raises(BudgetExceededError, match="unpriced"):
        store.reserve("a", "r", SCOPE, None, now=NOW)
    lenient = budgets(tmp_path / "c.db", total(Decimal("1")), allow_unpriced=True)
    assert lenient.reserve("a", "r", SCOPE, None, now=NOW) is False
    # no applicable limit: nothing to refuse
    other = budgets(tmp_path / "d.db", total(Decimal("1"), provider="elsewhere"))
    assert other.reserve("a", "r", SCOPE, None, now=NOW) is False


def test_scopes_each_and_specific(tmp_path: Path) -> None:
    per_tenant = Limit(name="tenant", amount=Decimal("1"), tenant="*", period="day")
    one_model = Limit(name="m", amount=Decimal("5"), model="oa/gpt-4.1")
    store = budgets(tmp_path / "b.db", per_tenant, one_model, reservation_ttl=10**6)
    store.reserve("a", "ra", SCOPE, Decimal("1"), now=NOW)
    other_tenant = Scope(provider="oa", model="gpt-4.1", tenant="globex")
    store.reserve("b", "rb", other_tenant, Decimal("1"), now=NOW)  # its own budget
    with pytest.raises(BudgetExceededError) as info:
        store.reserve("c", "rc", SCOPE, Decimal("0.5"), now=NOW)
    assert info.value.limit == "tenant" and info.value.period == "2025-11-30"
    assert info.value.retry_after == 86_400
    store.reserve("d", "rd", SCOPE, Decimal("0.5"), now=NOW + 86_400)  # next day
    assert store.reserved(one_model, now=NOW) == Decimal("2.5")  # a + b + d; c refused
    assert not one_model.applies(Scope(provider="other", model="gpt-4.1"))


def test_calendar_periods_in_the_configured_zone() -> None:
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    # 2025-11-30 23:30 in Paris: 30 minutes to the next day and to December
    ts = 1_764_541_800.0
    assert seconds_to_next_period("day", ts, paris) == 1800
    assert seconds_to_next_period("month", ts, paris) == 1800
    assert (
        Limit(name="x", amount=Decimal(1), period="month").counter(Scope(), ts, paris)
        == "x|2025-11"
    )


def test_alerts_once_per_threshold_per_period_across_stores(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    seen: list[Alert] = []
    limit = Limit(name="daily", amount=Decimal("1"), period="day")
    first = budgets(path, limit, on_alert=seen.append)
    second = BudgetStore(LedgerStore(path), [limit], on_alert=seen.append)  # another process

    def spend(store: BudgetStore, i: int, cost: str, ts: float = NOW) -> None:
        store.ledger.write([LedgerRow(request_id=f"r{i}", ts=ts, cost=Decimal(cost))])

    spend(first, 1, "0.3")
    assert seen == []
    spend(second, 2, "0.3")  # 0.6: crosses 50%
    spend(first, 3, "0.1")  # 0.7: nothing new
    spend(second, 4, "0.35")  # 1.05: crosses 80% and 100% at once
    spend(first, 5, "0.5")
    assert [(a.threshold, a.spent) for a in seen] == [
        (Decimal("0.5"), Decimal("0.6")),
        (Decimal("0.8"), Decimal("1.05")),
        (Decimal("1"), Decimal("1.05")),
    ]
    spend(first, 6, "0.6", ts=NOW + 86_400)  # a new day starts over
    assert seen[-1].period == "2025-12-01" and seen[-1].threshold == Decimal("0.5")
