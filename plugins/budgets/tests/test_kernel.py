"""Through a real Kernel with the mock provider: the gate refuses before any call
once the worst case no longer fits; the ledger and the budget agree."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from llmkernel import Kernel
from llmkernel.errors import BudgetExceededError
from llmkernel_budgets.plugin import budgets_for
from llmkernel_ledger.plugin import ledger_for

pytest.importorskip("llmkernel_mock")


def test_budget_through_the_kernel(tmp_path: Path) -> None:
    k = Kernel.from_config(
        {
            "providers": {"sim": {"type": "mock"}},
            "prices": {"sim/priced": {"input": "1000", "output": "1000"}},
            "plugin": {
                "ledger": {"path": str(tmp_path / "l.db")},
                "budgets": {"limits": [{"name": "cap", "amount": "0.2"}]},
            },
        }
    )
    granted, refused = 0, []
    for _ in range(20):
        try:
            k.chat(model="sim/priced", messages="hello there", max_tokens=20)
            granted += 1
        except BudgetExceededError as exc:
            refused.append(exc)
    ledger = ledger_for(k)
    ledger.writer.flush()
    store = budgets_for(k)
    assert store is not None
    limit = store.limits[0]
    assert granted and refused and refused[0].limit == "cap"
    assert ledger.store.total() == store.spent(limit) <= Decimal("0.2")
    assert store.reserved(limit) == 0
    assert ledger.store.count() == 20  # refusals are recorded too
    statuses = {r["status"] for r in ledger.store.rows()}
    assert statuses == {"ok", "refused"}
    k.close()


def kernel_at(path: Path, amount: str) -> Kernel:
    return Kernel.from_config(
        {
            "providers": {"sim": {"type": "mock"}},
            "prices": {"sim/priced": {"input": "1000", "output": "1000"}},
            "plugin": {
                "ledger": {"path": str(path)},
                "budgets": {"limits": [{"name": "cap", "amount": amount}], "slab": 4},
            },
        }
    )


def test_two_kernels_on_one_file_share_a_limit(tmp_path: Path) -> None:
    """Far from the limit each kernel reserves from its own slab in memory; together
    they never pass the limit, and at close each gives its slab's unused part back."""
    path = tmp_path / "l.db"
    kernels = [kernel_at(path, "2"), kernel_at(path, "2")]
    stores = [budgets_for(k) for k in kernels]
    assert stores[0] is not None and stores[1] is not None
    limit = stores[0].limits[0]
    refused = 0
    for _ in range(60):
        for k in kernels:
            try:
                k.chat(model="sim/priced", messages="hello there", max_tokens=20)
            except BudgetExceededError:
                refused += 1
    assert refused  # the limit was reached
    for k in kernels:
        ledger_for(k).writer.flush()
    owners = {
        row[0]
        for row in ledger_for(kernels[0]).store.conn.execute(
            "SELECT reservation FROM budget_reservations"
        )
    }
    assert owners <= {stores[0].owner, stores[1].owner}
    total = ledger_for(kernels[0]).store.total()
    assert total == stores[0].spent(limit) <= Decimal("2")
    for k in kernels:
        k.close()
    # the slabs' unused parts are back: nothing reserved, the spend is the ledger's
    assert stores[0].reserved(limit) == 0
    assert stores[0].spent(limit) == ledger_for(kernels[0]).store.total() == total


def test_slab_returned_at_close(tmp_path: Path) -> None:
    k = kernel_at(tmp_path / "l.db", "1000")
    for _ in range(2):
        k.chat(model="sim/priced", messages="hello there", max_tokens=20)
    store = budgets_for(k)
    assert store is not None
    limit = store.limits[0]
    ledger_for(k).writer.flush()
    assert store.reserved(limit) > 0  # this process's slab, for other processes to see
    k.close()
    assert store.reserved(limit) == 0
    assert store.spent(limit) == ledger_for(k).store.total() > 0


@pytest.mark.asyncio
async def test_a_reconfigure_without_budgets_drops_the_old_store(tmp_path: Path) -> None:
    base = {
        "providers": {"sim": {"type": "mock"}},
        "prices": {"sim/priced": {"input": "1000", "output": "1000"}},
        "plugin": {"ledger": {"path": str(tmp_path / "l.db")}},
    }
    limited = {**base, "plugin": {**base["plugin"], "budgets": {"limits": [{"amount": "0.01"}]}}}
    k = Kernel.from_config(limited)
    with pytest.raises(BudgetExceededError):
        for _ in range(10):
            await k.achat(model="sim/priced", messages="hello there", max_tokens=20)
    await k.areconfigure(base, drain=1)  # the budget removed live: the old store closed
    assert budgets_for(k) is None
    for _ in range(3):  # served, never refused by a closed store
        await k.achat(model="sim/priced", messages="hello there", max_tokens=20)
    await k.areconfigure(limited, drain=1)  # and back: the spend is the ledger's
    with pytest.raises(BudgetExceededError):
        await k.achat(model="sim/priced", messages="hello there", max_tokens=20)
    await k.aclose()
