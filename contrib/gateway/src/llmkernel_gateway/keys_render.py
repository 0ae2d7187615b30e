"""What ``llmkernel gateway-keys list`` and ``show`` print: a table of keys and one
key field by field, from the admin API's JSON rows. Never a secret or a hash (the
rows have none)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["render_list", "render_show", "when"]

_PERIODS = ("day", "month", "total")


def when(ts: float | None) -> str:
    if ts is None:
        return "never"
    moment = datetime.datetime.fromtimestamp(float(ts), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _usd(text: Any) -> str:
    if text is None:
        return "-"
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        return str(text)
    return "$" + format(value.normalize() if value else Decimal(0), "f")


def _state(row: Mapping[str, Any]) -> str:
    """The key's state; ``, rotating`` while a rotated secret is in its grace."""
    state = str(row.get("state", "?"))
    return f"{state}, rotating" if row.get("previous_secret_valid_until") else state


def _rate(row: Mapping[str, Any], name: str) -> str:
    value = (row.get("rate_limit") or {}).get(name)
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _spent(row: Mapping[str, Any], period: str) -> str:
    spent = _usd((row.get("spend") or {}).get(period, "0"))
    budget = (row.get("budget") or {}).get(period)
    return spent if budget is None else f"{spent} of {_usd(budget)}"


def _source(row: Mapping[str, Any]) -> str:
    return "config (read-only)" if row.get("read_only") else "store"


def render_list(rows: Sequence[Mapping[str, Any]]) -> str:
    """A table of keys: never a secret or hash."""
    if not rows:
        return (
            "no keys: the config file has none and the key store is empty (the gateway "
            "listens on loopback only)\n"
        )
    header = (
        "NAME",
        "SOURCE",
        "STATE",
        "TENANT",
        "TODAY",
        "MONTH",
        "TOTAL",
        "RPM",
        "TPM",
        "LAST USED",
    )
    table = [header] + [
        (
            str(row["name"]) + (" (admin)" if row.get("admin") else ""),
            _source(row),
            _state(row),
            str(row.get("tenant") or row["name"]),
            _spent(row, "day"),
            _spent(row, "month"),
            _spent(row, "total"),
            _rate(row, "requests_per_minute"),
            _rate(row, "tokens_per_minute"),
            when(row.get("last_used")),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in table
    )


def render_show(row: Mapping[str, Any]) -> str:
    """One key, field by field: never a secret or hash."""
    spend = row.get("spend") or {}
    budget = row.get("budget") or {}
    rate = row.get("rate_limit") or {}
    metadata = row.get("metadata") or {}
    lines = [
        ("name", str(row["name"])),
        ("source", _source(row)),
        ("state", _state(row)),
        ("admin", "yes" if row.get("admin") else "no"),
        ("tenant", str(row.get("tenant") or row["name"])),
        ("models", ", ".join(row.get("models") or []) or "all"),
        ("expires", when(row.get("expires_at"))),
        (
            "budget",
            ", ".join(f"{p} {_usd(budget[p])}" for p in _PERIODS if p in budget) or "none",
        ),
        (
            "spend",
            f"today {_spent(row, 'day')}, this month {_spent(row, 'month')}, total "
            f"{_spent(row, 'total')} ({spend.get('requests', 0)} requests, "
            f"{spend.get('errors', 0)} errors)",
        ),
        (
            "rate limit",
            ", ".join(f"{k} {_rate(row, k)}" for k in sorted(rate)) or "none",
        ),
        ("metadata", ", ".join(f"{k}={v}" for k, v in sorted(metadata.items())) or "none"),
        ("created", when(row.get("created_at")) if row.get("created_at") else "-"),
        ("updated", when(row.get("updated_at")) if row.get("updated_at") else "-"),
        ("last used", when(row.get("last_used"))),
    ]
    if row.get("previous_secret_valid_until"):
        until = when(row["previous_secret_valid_until"])
        lines.insert(3, ("old secret", f"valid until {until} (rotated)"))
    width = max(len(label) for label, _ in lines) + 1
    return "".join(f"{(label + ':').ljust(width)} {value}\n" for label, value in lines)
