"""The ``[plugin.budgets]`` table."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Literal

import attrs

from llmkernel_budgets.limits import Limit
from llmkernel_ledger.settings import known_timezone

__all__ = ["BudgetSettings", "LimitSettings"]


def _money(value: str | int | float, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if amount < 0 or not amount.is_finite():
        raise ValueError(f"{what} must be a non-negative number, not {value!r}")
    return amount


@attrs.frozen(kw_only=True)
class LimitSettings:
    """One ``[[plugin.budgets.limits]]`` table."""

    amount: str | int | float
    name: str | None = None
    period: Literal["total", "day", "month"] = "total"
    provider: str | None = None
    model: str | None = None
    tenant: str | None = None
    key: str | None = None

    def limit(self, index: int) -> Limit:
        name = self.name or f"limit{index + 1}"
        return Limit(
            name=name,
            amount=_money(self.amount, f"amount of budget {name!r}"),
            period=self.period,
            provider=self.provider,
            model=self.model,
            tenant=self.tenant,
            key=self.key,
        )


@attrs.frozen(kw_only=True)
class BudgetSettings:
    """``limits``; ``timezone`` of calendar days and months; ``reservation_ttl``
    seconds before a crashed process's reservation expires; ``alerts`` thresholds
    (fractions of a limit); ``allow_unpriced`` lets unpriced models through a budget;
    ``webhook`` (URL) gets each alert as a JSON POST, ``webhook_timeout`` seconds,
    ``webhook_attempts`` tries; ``slab`` worst cases leased at once per limit and
    process (``0``: one SQLite reservation per call), for ``slab_ttl`` seconds
    (renewed while in use, so a crashed process's slab expires); ``shared = false``
    keeps the budgets in this ledger even when ``[redis]`` is set (by default a
    fleet shares them there)."""

    limits: list[LimitSettings] = attrs.field(factory=list)
    timezone: str = attrs.field(default="UTC", validator=known_timezone)
    reservation_ttl: float = attrs.field(default=900.0)
    alerts: list[float] = attrs.field(factory=lambda: [0.5, 0.8, 1.0])
    allow_unpriced: bool = False
    webhook: str | None = None
    webhook_timeout: float = 5.0
    webhook_attempts: int = 3
    slab: int = attrs.field(default=50)
    slab_ttl: float = attrs.field(default=60.0)
    shared: bool = True

    @alerts.validator
    def _fractions(self, attribute: attrs.Attribute[list[float]], value: list[float]) -> None:
        for threshold in value:
            if not 0 < threshold <= 10:
                raise ValueError(f"alert threshold {threshold} must be a fraction above 0")

    @reservation_ttl.validator
    def _ttl(self, attribute: attrs.Attribute[float], value: float) -> None:
        if value <= 0:
            raise ValueError(f"reservation_ttl must be positive, not {value}")

    @slab.validator
    def _slab(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 0:
            raise ValueError(f"slab must be 0 (off) or a positive multiple, not {value}")

    @slab_ttl.validator
    def _slab_ttl(self, attribute: attrs.Attribute[float], value: float) -> None:
        if value < 1:
            raise ValueError(f"slab_ttl must be at least 1 second, not {value}")

    def build_limits(self) -> list[Limit]:
        limits = [item.limit(i) for i, item in enumerate(self.limits)]
        names = [limit.name for limit in limits]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"budget name {name!r} is used twice")
        return limits

    def thresholds(self) -> list[Decimal]:
        return [Decimal(str(t)) for t in self.alerts]
