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
