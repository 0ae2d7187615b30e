"""The budget gate: reserve the worst case before an attempt, settle after.

``acquire`` runs the reservation (one ``BEGIN IMMEDIATE`` transaction) in a thread,
so the event loop never waits on SQLite; a refusal is a
:class:`~llmkernel.errors.BudgetExceededError` (a ``RefusedError``), so the kernel
moves on to the next candidate or raises it when none is left. ``release`` hands the
settlement to the ledger's writer thread, in order with the call's ledger row and in
the same transaction (one commit for both).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkernel_budgets.limits import Scope
    from llmkernel_budgets.store import BudgetStore
    from llmkernel_ledger.writer import LedgerWriter

__all__ = ["STATE_KEY", "BudgetGate", "scope_of"]

STATE_KEY = "llmkernel_budgets.reservation"


def scope_of(ctx: Any, candidate: Any) -> Scope:
    from llmkernel_budgets.limits import Scope
    from llmkernel_ledger.record import key_label

    metadata = getattr(ctx, "metadata", None) or {}
    tenant = metadata.get("tenant")
    return Scope(
        provider=candidate.provider,
        model=candidate.model,
        tenant=None if tenant is None else str(tenant),
        key=key_label(metadata.get("key")),
    )


class BudgetGate:
    def __init__(self, store: BudgetStore, writer: LedgerWriter) -> None:
        self.store = store
        self.writer = writer

    async def acquire(self, ctx: Any, attempt: Any) -> None:
        candidate = attempt.candidate
        scope = scope_of(ctx, candidate)
        if not self.store.applicable(scope):
            return
        worst = ctx.worst_case_cost(candidate)
        reservation = f"{ctx.id}:{attempt.index}"
        reserved = await asyncio.to_thread(
            self.store.reserve, reservation, str(ctx.id), scope, worst
        )
        if reserved:
            attempt.state[STATE_KEY] = reservation

    def release(self, ctx: Any, attempt: Any, outcome: Any) -> None:
        reservation = attempt.state.pop(STATE_KEY, None)
        if reservation is None:
            return
        cost = getattr(outcome, "cost", None)
        store = self.store
        self.writer.submit_sql(lambda conn: store.settle_in(conn, reservation, cost))
