"""Budget limits: an amount per period over the calls a scope selects."""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

import attrs

__all__ = ["DIMENSIONS", "EACH", "Limit", "Scope", "period_key", "seconds_to_next_period"]

DIMENSIONS = ("provider", "model", "tenant", "key")
EACH = "*"
Period = Literal["total", "day", "month"]


@attrs.frozen(kw_only=True)
class Scope:
    """Who and what a call is: provider instance, model id, tenant, key label."""

    provider: str | None = None
    model: str | None = None
    tenant: str | None = None
    key: str | None = None

    def get(self, dimension: str) -> str | None:
        value: str | None = getattr(self, dimension)
        return value


@attrs.frozen(kw_only=True)
class Limit:
    """``amount`` (``Decimal``, in the prices' currency) per ``period`` (``total``,
    a calendar ``day`` or ``month`` in the budgets' time zone) over the calls that
    match every selector. A selector is a value (only that provider, model, tenant
    or key), ``"*"`` (a separate budget for each value) or ``None`` (all together).
    ``model`` matches the model id or ``provider/model``."""

    name: str
    amount: Decimal
    period: Period = "total"
    provider: str | None = None
    model: str | None = None
    tenant: str | None = None
    key: str | None = None

    def selectors(self) -> Mapping[str, str]:
        return {d: v for d in DIMENSIONS if (v := getattr(self, d)) is not None}

    def applies(self, scope: Scope) -> bool:
        for dimension, wanted in self.selectors().items():
            value = scope.get(dimension)
            if wanted == EACH:
                if value is None:
                    return False
                continue
            if dimension == "model" and "/" in wanted:
                if wanted != f"{scope.provider}/{scope.model}":
                    return False
            elif value != wanted:
                return False
        return True

    def counter(self, scope: Scope, ts: float, tz: ZoneInfo) -> str:
        """The key of the running total this call counts against."""
        parts = [self.name]
        for dimension, wanted in self.selectors().items():
            if wanted == EACH:
                parts.append(f"{dimension}={scope.get(dimension)}")
        parts.append(period_key(self.period, ts, tz))
        return "|".join(parts)


def period_key(period: Period, ts: float, tz: ZoneInfo) -> str:
    """``"total"``, ``"2026-11-30"`` or ``"2026-11"``: the calendar period of ``ts``."""
    if period == "total":
        return "total"
    local = datetime.fromtimestamp(ts, tz)
    return local.strftime("%Y-%m-%d") if period == "day" else local.strftime("%Y-%m")


def seconds_to_next_period(period: Period, ts: float, tz: ZoneInfo) -> float | None:
    """Seconds until the period of ``ts`` ends (``None`` for ``total``)."""
    if period == "total":
        return None
    local = datetime.fromtimestamp(ts, tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        end = (start + timedelta(days=1, hours=2)).replace(hour=0)  # DST-safe
    else:
        days = monthrange(local.year, local.month)[1] - local.day + 1
        end = (start + timedelta(days=days, hours=2)).replace(hour=0)
    return max(0.0, end.timestamp() - ts)
