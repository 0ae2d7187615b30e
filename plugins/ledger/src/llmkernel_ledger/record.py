"""Turn a finished call (the kernel's ``RequestContext`` and ``Outcome``) into a row."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from llmkernel.types import Usage
from llmkernel_ledger.store import LedgerRow

__all__ = ["Finished", "billed_cost", "is_estimated", "key_label", "row_from"]

_SECRET_PREFIXES = ("sk-", "sk_", "Bearer ", "AIza")


def key_label(value: Any) -> str | None:
    """The key as the ledger keeps it: its name as given, or a short hash when the
    value looks like a secret (a raw API key must never reach the file)."""
    if value is None:
        return None
    text = str(value)
    if text.startswith(_SECRET_PREFIXES) or len(text) > 64:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return text


def is_estimated(outcome: Any) -> bool:
    """Whether the outcome's usage is the kernel's estimate (a stream stopped before
    the provider reported it): ``outcome.usage_estimated`` or ``usage.estimated``."""
    if getattr(outcome, "usage_estimated", False):
        return True
    return bool(getattr(getattr(outcome, "usage", None), "estimated", False))


def billed_cost(ctx: Any, outcome: Any) -> Decimal | None:
    """What the call (or attempt) is billed: ``outcome.cost``, else, when it ended
    with tokens but no cost (an error after a partial answer, a stream stopped
    early), those tokens at the candidate's price. ``None`` when unpriced."""
    cost: Decimal | None = getattr(outcome, "cost", None)
    if cost is not None:
        return cost
    usage = getattr(outcome, "usage", None)
    candidate = getattr(outcome, "candidate", None)
    if usage is None or candidate is None or not (usage.input_tokens or usage.output_tokens):
        return None
    price_of = getattr(ctx, "price", None)
    price = price_of(candidate) if price_of is not None else None
    if price is None:
        return None
    billed: Decimal = price.cost(usage)
    return billed


class Finished:
    """A finished call, turned into its row on the writer thread (off the loop).
    ``cost`` is what it is billed (:func:`billed_cost`, worked out on the loop)."""

    __slots__ = ("cost", "ctx", "outcome")

    def __init__(self, ctx: Any, outcome: Any, cost: Decimal | None) -> None:
        self.ctx = ctx
        self.outcome = outcome
        self.cost = cost

    def row(self) -> LedgerRow:
        return row_from(self.ctx, self.outcome, cost=self.cost)


_UNSET: Any = object()


def row_from(ctx: Any, outcome: Any, *, cost: Decimal | None = _UNSET) -> LedgerRow:
    """The ledger row of a call; reads only the public contract's attributes.
    ``cost`` (default: :func:`billed_cost`) is what the call is billed."""
    metadata = getattr(ctx, "metadata", None) or {}
    candidate = getattr(outcome, "candidate", None)
    usage: Usage = getattr(outcome, "usage", None) or Usage()
    error = getattr(outcome, "error", None)
    if cost is _UNSET:
        cost = billed_cost(ctx, outcome)
    attempts: Any = getattr(outcome, "attempts", None)
    if attempts is None:
        attempts = getattr(ctx, "attempts", None) or ()
    request = getattr(ctx, "request", None)
    variant = getattr(ctx, "variant", None)
    return LedgerRow(
        request_id=str(ctx.id),
        ts=float(ctx.started_at),
        kind=str(getattr(ctx, "kind", "chat")),
        status=str(getattr(outcome, "status", "ok")),
        error_kind=None if error is None else str(getattr(error, "kind", type(error).__name__)),
        tenant=None if metadata.get("tenant") is None else str(metadata["tenant"]),
        key=key_label(metadata.get("key")),
        provider=getattr(candidate, "provider", None),
        provider_type=getattr(candidate, "provider_type", None),
        model=getattr(candidate, "model", None) or getattr(request, "model", None),
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost=Decimal(cost) if cost is not None else None,
        latency=getattr(outcome, "latency", None),
        first_event_latency=getattr(outcome, "first_event_latency", None),
        attempts=attempts if isinstance(attempts, int) else len(attempts),
        cached=bool(getattr(outcome, "cached", False)),
        metadata=_extra(metadata),
        usage_estimated=is_estimated(outcome),
        experiment=None if variant is None else getattr(request, "model", None),
        variant=variant,
    )


def _extra(metadata: Any) -> str | None:
    """Metadata beyond tenant and key (a batch run, a custom id), as sorted JSON."""
    import json

    extra = {str(k): str(v) for k, v in metadata.items() if k not in ("tenant", "key")}
    return json.dumps(extra, sort_keys=True) if extra else None
