"""Slabs: a process leases part of a limit in one transaction and hands reservations
out of it in memory. Together, stores (processes, kernels) sharing a file never
exceed a limit; a killed process's slab expires; close gives the unused part back;
near a limit every call reserves exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from llmkernel.errors import BudgetExceededError
from llmkernel_budgets.limits import Limit, Scope
from llmkernel_budgets.store import BudgetStore, Hold
from llmkernel_ledger.store import LedgerRow, LedgerStore

WORST = Decimal("0.01")
NOW = 1_764_460_800.0  # 2025-11-30T00:00:00Z
SCOPE = Scope(provider="oa", model="gpt-4.1", tenant="acme")
_stores: list[BudgetStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _stores:  # stops the renewer threads
        _stores.pop().return_slabs()


def store_at(path: Path, *limits: Limit, slab: int = 5, **kw: object) -> BudgetStore:
    store = BudgetStore(LedgerStore(path), limits, slab=slab, **kw)  # type: ignore[arg-type]
    _stores.append(store)
    return store


def rows(store: BudgetStore) -> list[tuple[str, str, Decimal]]:
    with store.ledger.lock:
        found = store.ledger.conn.execute(
            "SELECT reservation, counter, amount FROM budget_reservations ORDER BY id"
        ).fetchall()
    return [(r[0], r[1], Decimal(r[2])) for r in found]


def acquire(store: BudgetStore, request_id: str, worst: Decimal = WORST, now: float = NOW) -> Hold:
    """What the gate does: memory first, else one transaction."""
    pairs = store.counters(SCOPE, now)
    hold = store.take(pairs, worst, now)
    if hold is None:
        hold = store.reserve_slow(f"{request_id}:1", request_id, SCOPE, pairs, worst, now=now)
    return hold


def finish(store: BudgetStore, request_id: str, hold: Hold, cost: Decimal | None) -> None:
    """What the gate's release and the ledger's row do (the writer, synchronously)."""
    store.release(hold, request_id, cost)
    if hold.reservation is not None:
        store.settle(hold.reservation, cost)
    row = LedgerRow(
        request_id=request_id, ts=NOW, provider="oa", model="gpt-4.1", tenant="acme", cost=cost
    )
    store.ledger.write([row])


def test_reservations_come_from_memory_until_the_slab_is_used_up(tmp_path: Path) -> None:
    limit = Limit(name="all", amount=Decimal("100"))
    store = store_at(tmp_path / "b.db", limit, slab=5)
    first = acquire(store, "r0")
    assert first.slabs and first.reservation is None
    # one slab row: this call plus 5 worst cases
    assert rows(store) == [(store.owner, "all|total", Decimal("0.06"))]
    holds = [first] + [acquire(store, f"r{i}") for i in range(1, 6)]
    assert all(h.slabs and h.reservation is None for h in holds)
    assert rows(store) == [(store.owner, "all|total", Decimal("0.06"))]  # no SQLite write
    # the seventh does not fit: the slab grows, in one transaction
    holds.append(acquire(store, "r6"))
    assert rows(store) == [(store.owner, "all|total", Decimal("0.12"))]
    for i, hold in enumerate(holds):
        finish(store, f"r{i}", hold, Decimal("0.004"))
    assert store.spent(limit, now=NOW) == Decimal("0.028")
    assert store.ledger.total() == Decimal("0.028")
    # each committed row moved its cost from the slab to the spend, in its transaction
    assert store.reserved(limit, now=NOW) == Decimal("0.092")
    assert rows(store) == [(store.owner, "all|total", Decimal("0.092"))]


def test_a_lease_covers_only_what_is_in_flight_or_pending(tmp_path: Path) -> None:
    limit = Limit(name="all", amount=Decimal("100"))
    store = store_at(tmp_path / "b.db", limit, slab=2)
    holds = [acquire(store, f"r{i}") for i in range(3)]
    for i, hold in enumerate(holds):
        finish(store, f"r{i}", hold, WORST)
    acquire(store, "r3")  # a new lease: the slab covers only r3 plus 2 worst cases
    assert rows(store) == [(store.owner, "all|total", Decimal("0.03"))]
    assert store.spent(limit, now=NOW) == Decimal("0.03")


def test_two_stores_on_one_file_never_exceed_the_limit_together(tmp_path: Path) -> None:
    """Two kernels (or processes) on one database, taking turns: all they admit
    together reaches the limit and never passes it."""
    path = tmp_path / "b.db"
    limit = Limit(name="all", amount=WORST * 40)
    a, b = store_at(path, limit, slab=4), store_at(path, limit, slab=4)
    admitted = {"a": 0, "b": 0}
    refused: list[BudgetExceededError] = []
    in_flight: list[tuple[BudgetStore, str, Hold]] = []
    for i in range(60):
        for name, store in (("a", a), ("b", b)):
            try:
                hold = acquire(store, f"{name}{i}")
            except BudgetExceededError as exc:
                refused.append(exc)
                continue
            admitted[name] += 1
            in_flight.append((store, f"{name}{i}", hold))
            if i % 3:  # now and then a call stays in flight while the other side runs
                for call in in_flight:
                    finish(*call, WORST)
                in_flight.clear()
            assert a.spent(limit, now=NOW) + a.reserved(limit, now=NOW) <= limit.amount
    for call in in_flight:
        finish(*call, WORST)
    assert admitted["a"] + admitted["b"] == 40
    assert admitted["a"] > 0 and admitted["b"] > 0
    assert a.ledger.total() == limit.amount == a.spent(limit, now=NOW)
    assert refused[0].limit == "all" and refused[0].amount == limit.amount


CHILD = textwrap.dedent(
    """
    import sys, threading
    from decimal import Decimal
    from llmkernel.errors import BudgetExceededError
    from llmkernel_budgets.limits import Limit, Scope
    from llmkernel_budgets.store import BudgetStore
    from llmkernel_ledger.store import LedgerRow, LedgerStore

    path, prefix = sys.argv[1], sys.argv[2]
    worst = Decimal("0.01")
    now = 1764460800.0
    ledger = LedgerStore(path)
    store = BudgetStore(ledger, [Limit(name="all", amount=worst * 37)], slab=3)
    scope = Scope(provider="oa", model="gpt-4.1")
    granted = []
    go = threading.Barrier(100)

    def call(i):
        rid = f"{prefix}{i}"
        go.wait()
        pairs = store.counters(scope, now)
        try:
            hold = store.take(pairs, worst, now) or store.reserve_slow(
                rid + ":1", rid, scope, pairs, worst, now=now
            )
        except BudgetExceededError:
            return
        granted.append(i)
        store.release(hold, rid, worst)
        if hold.reservation is not None:
            store.settle(hold.reservation, worst)
        ledger.write([LedgerRow(request_id=rid, ts=now, provider="oa", model="gpt-4.1",
                                cost=worst)])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(100)]
    for t in threads: t.start()
    for t in threads: t.join()
    store.return_slabs()
    print(len(granted))
    """
)


def test_two_processes_with_slabs_200_requests_never_over(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    limit = Limit(name="all", amount=WORST * 37)
    store = store_at(path, limit)
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
    assert 0 < granted <= 37
    assert store.ledger.total() == WORST * granted == store.spent(limit, now=NOW)
    assert store.reserved(limit, now=NOW) == 0  # both returned their slabs


HOLDER = textwrap.dedent(
    """
    import sys, time
    from decimal import Decimal
    from llmkernel_budgets.limits import Limit, Scope
    from llmkernel_budgets.store import BudgetStore
    from llmkernel_ledger.store import LedgerStore

    store = BudgetStore(LedgerStore(sys.argv[1]), [Limit(name="all", amount=Decimal("1"))],
                        slab=10, slab_ttl=30)
    scope = Scope(provider="oa", model="gpt-4.1")
    store.reserve_slow("x:1", "x", scope, store.counters(scope, time.time()), Decimal("0.01"))
    print("leased", flush=True)
    time.sleep(120)
    """
)


def test_a_killed_processs_slab_expires(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    limit = Limit(name="all", amount=Decimal("1"))
    store = store_at(path, limit, slab=10)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "leased"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    now = time.time()
    assert store.reserved(limit, now=now) == Decimal("0.11")  # its call plus 10 worst cases
    # the killed process's slab counts against everyone until it expires...
    with pytest.raises(BudgetExceededError) as info:
        store.reserve("big", "big", SCOPE, Decimal("0.95"), now=now)
    assert info.value.limit == "all"
    # ...and stops counting at once when it does (slab_ttl: 30 s, never renewed)
    later = now + 31
    assert store.reserved(limit, now=later) == 0
    assert store.reserve("big", "big", SCOPE, Decimal("0.95"), now=later)


def test_close_returns_the_unused_part_in_flight_stays(tmp_path: Path) -> None:
    limit = Limit(name="all", amount=Decimal("100"))
    store = store_at(tmp_path / "b.db", limit, slab=5)
    done = acquire(store, "r0")
    in_flight = acquire(store, "r1")
    finish(store, "r0", done, Decimal("0.005"))
    store.return_slabs()
    # only the call still in flight stays reserved
    assert rows(store) == [(store.owner, "all|total", Decimal("0.01"))]
    store.release(in_flight, "r1", None)  # it failed: costs nothing
    store.return_slabs()
    assert rows(store) == []
    assert store.reserved(limit, now=NOW) == 0
    assert store.spent(limit, now=NOW) == Decimal("0.005")


def test_near_the_limit_each_call_reserves_exactly(tmp_path: Path) -> None:
    # room for 30 calls; a slab is 5 worst cases and needs twice that room
    limit = Limit(name="all", amount=WORST * 30)
    store = store_at(tmp_path / "b.db", limit, slab=5)
    hold = acquire(store, "r0")
    assert hold.slabs and hold.reservation is None
    finish(store, "r0", hold, WORST)
    exact_seen = False
    for i in range(1, 30):
        hold = acquire(store, f"r{i}")
        remaining = limit.amount - store.spent(limit, now=NOW)
        if hold.reservation is not None:
            exact_seen = True
            assert not hold.slabs
            # no slab locks the last cents: the free part was returned
            assert [r for r in rows(store) if r[0] == store.owner] == []
        assert remaining >= WORST  # this call fits
        finish(store, f"r{i}", hold, WORST)
        assert store.spent(limit, now=NOW) + store.reserved(limit, now=NOW) <= limit.amount
    assert exact_seen
    assert store.spent(limit, now=NOW) == limit.amount
    with pytest.raises(BudgetExceededError) as info:
        acquire(store, "over")
    assert (info.value.limit, info.value.spent, info.value.amount) == (
        "all",
        limit.amount,
        limit.amount,
    )
    assert info.value.period == "total" and info.value.retry_after is None


def test_one_limit_near_one_far_mixed(tmp_path: Path) -> None:
    far = Limit(name="far", amount=Decimal("100"))
    near = Limit(name="near", amount=WORST * 3, tenant="*", period="day")
    store = store_at(tmp_path / "b.db", far, near, slab=5)
    hold = acquire(store, "r0")
    assert [s.counter for s in hold.slabs] == ["far|total"]
    assert hold.reservation == "r0:1"
    finish(store, "r0", hold, WORST)
    assert store.spent(far, now=NOW) == WORST
    assert store.spent(near, SCOPE, now=NOW) == WORST
    assert store.reserved(near, SCOPE, now=NOW) == 0
    for i in (1, 2):
        finish(store, f"r{i}", acquire(store, f"r{i}"), WORST)
    with pytest.raises(BudgetExceededError) as info:
        acquire(store, "r3")
    assert info.value.limit == "near" and info.value.period == "2025-11-30"
    assert info.value.retry_after == 86_400
    # the far limit's slab served r1 and r2 from memory, and the refusal of r3 by the
    # near limit took nothing from it
    assert store.reserved(far, now=NOW) == Decimal("0.03")  # 0.06 less r0, r1, r2
    assert [r[1] for r in rows(store)] == ["far|total"]
    other = Scope(provider="oa", model="gpt-4.1", tenant="globex")
    again = store.take(store.counters(other, NOW), WORST, NOW)
    assert again is None  # globex's own near limit has no slab: exact there too


def test_renewal_extends_slabs_in_use_and_returns_idle_ones(tmp_path: Path) -> None:
    limit = Limit(name="all", amount=Decimal("100"))
    store = store_at(tmp_path / "b.db", limit, slab=5, slab_ttl=30)
    start = time.time()
    hold = acquire(store, "r0", now=start)
    store.renew(now=start + 20)  # a call in flight: extended
    # lives 30 s from the renewal, not from the lease
    assert store.reserved(limit, now=start + 45) == Decimal("0.06")
    store.release(hold, "r0", None)
    store.release(acquire(store, "r1", now=start + 20), "r1", None)  # from memory
    store.renew(now=start + 21)  # taken from since the last renewal: kept
    assert store.reserved(limit, now=start + 50) == Decimal("0.06")
    store.renew(now=start + 22)  # idle now: given back
    assert store.reserved(limit, now=start + 22) == 0 and rows(store) == []


def test_many_threads_one_store_never_over(tmp_path: Path) -> None:
    limit = Limit(name="all", amount=WORST * 50)
    store = store_at(tmp_path / "b.db", limit, slab=4)
    admitted: list[int] = []
    barrier = threading.Barrier(100)

    def call(i: int) -> None:
        barrier.wait()
        try:
            hold = acquire(store, f"r{i}")
        except BudgetExceededError:
            return
        admitted.append(i)
        time.sleep(0.001)
        finish(store, f"r{i}", hold, WORST)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert 0 < len(admitted) <= 50
    assert store.ledger.total() == WORST * len(admitted) == store.spent(limit, now=NOW)
    store.return_slabs()
    assert store.reserved(limit, now=NOW) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_use_its_parents_slabs(tmp_path: Path) -> None:
    from llmkernel.lifecycle import Lifecycle

    limit = Limit(name="all", amount=Decimal("100"))
    store = store_at(tmp_path / "b.db", limit, slab=5)
    lifecycle = Lifecycle()  # a kernel's: the budgets plugin registers store.after_fork
    lifecycle.on_fork(store.ledger.after_fork)
    lifecycle.on_fork(store.after_fork)
    acquire(store, "r0")
    parent_owner = store.owner
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, then leave at once
        ok = store.owner != parent_owner and store.take(store.counters(SCOPE, NOW), WORST, NOW)
        os.write(write, b"clean" if ok is None else b"reused")
        os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 16)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"clean"
    assert store.take(store.counters(SCOPE, NOW), WORST, NOW) is not None  # the parent's own


def test_free_calls_need_no_transaction_each(tmp_path: Path) -> None:
    limit = Limit(name="all", amount=Decimal("1"))
    store = store_at(tmp_path / "b.db", limit, slab=5)
    statements: list[str] = []
    store.ledger.conn.set_trace_callback(statements.append)
    first = acquire(store, "r0", worst=Decimal(0))  # checked in one transaction
    begins = sum(s.startswith("BEGIN") for s in statements)
    assert begins == 1 and first.reservation is None
    for i in range(1, 20):
        assert acquire(store, f"r{i}", worst=Decimal(0)).reservation is None
    assert sum(s.startswith("BEGIN") for s in statements) == begins
    assert store.reserved(limit, now=NOW) == 0


def test_an_overrun_never_uncovers_the_calls_in_flight(tmp_path: Path) -> None:
    """A call that costs more than its worst case (an estimated input count) moves
    its cost to the spend, but the slab keeps covering the calls still in flight."""
    limit = Limit(name="all", amount=Decimal("100"))
    store = store_at(tmp_path / "b.db", limit, slab=5)
    overrun = acquire(store, "r0")
    in_flight = [acquire(store, f"r{i}") for i in range(1, 4)]
    assert rows(store) == [(store.owner, "all|total", Decimal("0.06"))]
    finish(store, "r0", overrun, Decimal("0.5"))
    assert store.spent(limit, now=NOW) == Decimal("0.5")
    # only r0's worst case left the slab: the three in flight stay reserved
    assert rows(store) == [(store.owner, "all|total", Decimal("0.05"))]
    for i, hold in enumerate(in_flight, 1):
        finish(store, f"r{i}", hold, WORST)
    assert store.spent(limit, now=NOW) == Decimal("0.53")
    assert rows(store) == [(store.owner, "all|total", Decimal("0.02"))]  # still free
    assert store.ledger.total() == Decimal("0.53")
    store.return_slabs()
    assert rows(store) == []


def test_threads_with_a_real_writer_never_pass_either_limit(tmp_path: Path) -> None:
    """Calls on 30 threads, costs below their worst cases, rows committed by the
    ledger's writer thread in groups (so costs stay pending a while): the total
    and each tenant's spend stay within their limits."""
    import random

    from llmkernel_ledger.writer import LedgerWriter

    total = Limit(name="all", amount=Decimal("1.3"))
    tenants = Limit(name="t", amount=Decimal("0.75"), tenant="*")
    store = store_at(tmp_path / "b.db", total, tenants, slab=5)
    writer = LedgerWriter(store.ledger)
    scopes = [Scope(provider="oa", model="gpt-4.1", tenant=t) for t in ("a", "b")]

    def worker(w: int) -> None:
        rng = random.Random(w)
        for j in range(20):
            request_id = f"{w}-{j}"
            scope = rng.choice(scopes)
            worst = Decimal(rng.randint(1, 20)) / 1000
            now = time.time()
            pairs = store.counters(scope, now)
            try:
                hold = store.take(pairs, worst, now) or store.reserve_slow(
                    f"{request_id}:1", request_id, scope, pairs, worst, now=now
                )
            except BudgetExceededError:
                continue
            time.sleep(rng.random() * 0.002)
            cost = worst * rng.randint(1, 10) / 10 if rng.random() < 0.8 else None
            store.release(hold, request_id, cost)
            if hold.reservation is not None:
                writer.submit_sql(
                    lambda conn, r=hold.reservation, c=cost: store.settle_in(conn, r, c)
                )
            writer.offer(
                LedgerRow(
                    request_id=request_id,
                    ts=now,
                    provider="oa",
                    model="gpt-4.1",
                    tenant=scope.tenant,
                    cost=cost,
                )
            )

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    writer.close()
    now = time.time()
    assert store.ledger.total() == store.spent(total, now=now) <= total.amount
    for scope in scopes:
        assert store.spent(tenants, scope, now=now) <= tenants.amount
    assert store.ledger.total() > total.amount * Decimal("0.9")  # the limit was reached
    store.return_slabs()
    assert store.reserved(total, now=now) == 0
