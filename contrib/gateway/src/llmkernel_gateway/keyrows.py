"""Keys as the admin API (``GET /admin/keys``) and ``llmkernel gateway-keys list``
show them: settings and state, spend today / this month / in total from the ledger,
and last use. Never a secret or a hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmkernel.errors import ConfigError
from llmkernel_gateway import keyops

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_gateway.records import KeyRecord
    from llmkernel_gateway.settings import Key

__all__ = ["key_rows", "ledger_of", "money", "no_spend", "spend_by_key"]


def money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def no_spend() -> dict[str, Any]:
    return {"day": "0", "month": "0", "total": "0", "requests": 0, "errors": 0}


def ledger_of(kernel: Kernel | None) -> Any:
    """The kernel's ledger (``llmkernel_ledger``), or ``None`` when it is not
    installed or not enabled."""
    try:
        from llmkernel_ledger.plugin import ledger_for
    except ImportError:
        return None
    if kernel is None:
        return None
    try:
        return ledger_for(kernel)
    except ConfigError:
        return None


def spend_by_key(ledger: Any, now: float, name: str | None = None) -> dict[str, dict[str, Any]]:
    """Each key's spend today, this month (the ledger's calendar) and in total (USD
    as exact decimal text), and its requests and errors; empty without a ledger."""
    if ledger is None:
        return {}
    from zoneinfo import ZoneInfo

    from llmkernel_ledger.store import period_keys

    store = ledger.store
    day, month = period_keys(now, ZoneInfo(ledger.settings.timezone))
    where = {"key": name} if name is not None else {}
    out: dict[str, dict[str, Any]] = {}
    for period, extra in (("total", {}), ("month", {"month": month}), ("day", {"day": day})):
        for row in store.summary("key", where={**where, **extra}):
            if row["key"] is None:
                continue
            entry = out.setdefault(row["key"], no_spend())
            entry[period] = money(row["cost"])
            if period == "total":
                entry["requests"] = row["requests"]
                entry["errors"] = row["errors"]
    return out


def key_rows(
    config_keys: Iterable[Key],
    records: Mapping[str, KeyRecord],
    now: float,
    *,
    used: Mapping[str, float],
    spend: Mapping[str, Mapping[str, Any]],
    only: str | None = None,
) -> list[dict[str, Any]]:
    """Every key (``only``: that one), the config file's first (read-only), then the
    store's by name, each with ``last_used`` and ``spend``."""
    rows = [keyops.config_key_json(k) for k in config_keys if only in (None, k.name)]
    rows += [r.public(now) for n, r in sorted(records.items()) if only in (None, n)]
    for row in rows:
        row["last_used"] = used.get(row["name"])
        row["spend"] = dict(spend.get(row["name"]) or no_spend())
    return rows[:1] if only is not None else rows
