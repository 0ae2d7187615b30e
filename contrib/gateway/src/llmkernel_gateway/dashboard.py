"""The numbers of the dashboard (``GET /``) and ``/status.json``.

They are read from the ledger (``llmkernel-ledger``: one SQLite file every worker of
``llmkernel serve --workers N`` writes, so the totals are the server's, whichever
worker answers) and from the shared metrics (breaker states: the worst of the
workers'); Redis's state is the answering worker's link. Without the ledger
plugin only the per-deployment rows of the metrics are there.

Windows: ``hour`` is the last 60 minutes, ``day`` the last 24 hours; series are
by minute over the hour and by hour over the day; spend ``day`` and ``month`` are
the calendar periods of the ledger's time zone, as budgets count them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmkernel import log

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_gateway.settings import Key
    from llmkernel_ledger.store import LedgerStore

__all__ = ["FLEET_FIELDS", "Dashboard", "fleet_share", "fleet_sum"]

HOUR, DAY = 3600, 86400
#: every deployment row shows these (the ledger's, and the metrics' breaker)
_DEPLOYMENT = (
    "requests",
    "errors",
    "error_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
)


def _money(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _totals(row: Mapping[str, Any] | None) -> dict[str, Any]:
    row = dict(row or {})
    requests = int(row.get("requests", 0))
    cached = int(row.get("cached", 0))
    return {
        "requests": requests,
        "errors": int(row.get("errors", 0)),
        "error_rate": float(row.get("error_rate", 0.0)),
        "errors_by_kind": dict(row.get("errors_by_kind", {})),
        "latency_p50_ms": row.get("latency_p50_ms"),
        "latency_p95_ms": row.get("latency_p95_ms"),
        "ttft_p50_ms": row.get("ttft_p50_ms"),
        "ttft_p95_ms": row.get("ttft_p95_ms"),
        "input_tokens": int(row.get("input_tokens", 0)),
        "output_tokens": int(row.get("output_tokens", 0)),
        "cost": _money(row.get("cost", Decimal(0))),
        "unpriced": int(row.get("unpriced", 0)),
        "cached": cached,
        "cache_hit_rate": cached / requests if requests else 0.0,
    }


class Dashboard:
    """Reads the ledger of ``kernel`` on a connection of its own (never the
    writer's), opened on first use; :meth:`collect` runs in a worker thread."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._store: LedgerStore | None = None
        self._path: str | None = None
        try:
            from llmkernel_ledger.plugin import ledger_for

            settings = ledger_for(kernel).settings
            self._path, self._tz = settings.path, settings.timezone
        except Exception:  # no ledger plugin (or not enabled): the metrics alone
            self._path = None

    @property
    def store(self) -> LedgerStore | None:
        if self._path is None:
            return None
        if self._store is None:
            from llmkernel_ledger.store import LedgerStore

            self._store = LedgerStore(self._path, timezone=self._tz, lazy=True)
        return self._store

    @property
    def identity(self) -> str | None:
        """``host:ledger file``: one share of the fleet's totals per ledger."""
        if self._path is None:
            return None
        import os
        import socket

        return f"{socket.gethostname()}:{os.path.realpath(self._path)}"

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def collect(
        self,
        *,
        keys: Iterable[Key],
        deployments: Mapping[str, Mapping[str, Any]],
        kernel_stats: Mapping[str, Any],
        redis_configured: bool,
        known: Callable[[str], bool] = lambda name: True,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Everything but the server's own fields (``now``, ``pid``...)."""
        now = time.time() if now is None else now
        redis = kernel_stats.get("redis")
        out: dict[str, Any] = {
            "source": "metrics",
            "redis": dict(redis) if isinstance(redis, Mapping) else None,
            "redis_configured": redis_configured,
            "deployments": {
                name: {**row, "cost_today": row.get("cost_today", "0")}
                for name, row in deployments.items()
            },
        }
        store = self.store
        if store is None:
            return out
        try:
            out.update(self._from_ledger(store, list(keys), deployments, known, now))
        except Exception as exc:  # a busy or broken file: the page still answers
            log.warning("gateway.dashboard_read_failed", error=f"{type(exc).__name__}: {exc}")
            out["ledger_error"] = f"{type(exc).__name__}: {exc}"
        return out

    def _from_ledger(
        self,
        store: LedgerStore,
        keys: list[Key],
        metrics_rows: Mapping[str, Mapping[str, Any]],
        known: Callable[[str], bool],
        now: float,
    ) -> dict[str, Any]:
        from llmkernel_ledger import report

        local = datetime.fromtimestamp(now, store.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        today, month = midnight.timestamp(), midnight.replace(day=1).timestamp()
        hour_ago, day_ago = now - HOUR, now - DAY
        totals = {
            "hour": _totals(report.compare(store, since=hour_ago).get("all")),
            "day": _totals(report.compare(store, since=day_ago).get("all")),
        }
        series = {}
        for name, step, since in (
            ("minute", 60, now - HOUR + 60),
            ("hour", HOUR, now - DAY + HOUR),
        ):
            points = report.series(store, step=step, since=since // step * step, until=now)
            series[name] = [{**p, "cost": _money(p["cost"])} for p in points]
        # per deployment over the day, with the metrics' breaker state
        deployments: dict[str, dict[str, Any]] = {}
        found = report.compare(store, "model", since=day_ago)
        # a client-sent model name that matched no deployment is "other/other" (bounded)
        for name in [n for n in found if not known(n)]:
            row = found.pop(name)
            into = found.setdefault("other/other", {"requests": 0, "errors": 0})
            into["requests"] += row["requests"]
            into["errors"] += row["errors"]
            into["error_rate"] = into["errors"] / into["requests"]
        spent_today = {r["model"]: r["cost"] for r in store.summary("model", since=today)}
        for name in sorted(set(found) | {n for n, r in metrics_rows.items() if r.get("breaker")}):
            row = found.get(name, {})
            deployments[name] = {
                **{
                    field: row.get(field, 0 if field in ("requests", "errors") else None)
                    for field in _DEPLOYMENT
                },
                "input_tokens": int(row.get("input_tokens", 0)),
                "output_tokens": int(row.get("output_tokens", 0)),
                "cost_today": _money(spent_today.get(name, Decimal(0))),
                "breaker": (metrics_rows.get(name) or {}).get("breaker"),
            }
            if deployments[name]["error_rate"] is None:
                deployments[name]["error_rate"] = 0.0
        # per key: spend against its budget, refusals today
        periods = {"day": today, "month": month, "total": None}
        spend = {
            period: {r["key"]: r for r in store.summary("key", since=since)}
            for period, since in periods.items()
        }
        refused = report.error_kinds(store, by="key", since=today)
        key_rows = {}
        for key in sorted(keys, key=lambda k: k.name):
            used: dict[str, Any] = {}
            for period in periods:
                row = spend[period].get(key.name) or {}
                used[period] = _money(row.get("cost", Decimal(0)))
            kinds = refused.get(key.name, {})
            key_rows[key.name] = {
                "tenant": key.tenant,
                "admin": key.admin,
                "source": key.source,  # "config" (read-only) or "store"
                "state": key_state(key, now),
                "requests_today": int((spend["day"].get(key.name) or {}).get("requests", 0)),
                "spend": used,
                "budget": {p: _money(Decimal(str(v))) for p, v in key.budget.items()},
                "rate_limit": dict(key.rate_limit),
                "refused_rate_limit": int(kinds.get("rate_limit", 0)),
                "refused_budget": int(kinds.get("budget", 0)),
            }
        experiments = {
            experiment: {
                variant: {
                    **{field: row[field] for field in _DEPLOYMENT},
                    "share": row["share"],
                    "input_tokens": row["input_tokens"],
                    "output_tokens": row["output_tokens"],
                    "cost": _money(row["cost"]),
                }
                for variant, row in rows.items()
            }
            for experiment, rows in report.variants(store, since=day_ago).items()
        }
        day = totals["day"]
        return {
            "source": "ledger",
            "totals": totals,
            "series": series,
            "deployments": deployments,
            "keys": key_rows,
            "cache": {
                "hits": day["cached"],
                "requests": day["requests"],
                "hit_rate": day["cache_hit_rate"],
            },
            "experiments": experiments,
        }


def key_state(key: Key, now: float) -> str:
    """``active``, ``disabled`` or ``expired``."""
    if key.disabled:
        return "disabled"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


#: what an instance publishes of its ledger for the fleet's totals (sums only: a
#: percentile of several ledgers is not the sum of theirs)
FLEET_FIELDS = ("requests", "errors", "cached", "input_tokens", "output_tokens")


def fleet_share(store: LedgerStore, now: float) -> dict[str, Any]:
    """This instance's ledger totals over the last hour and day, for the fleet."""
    share: dict[str, Any] = {}
    for window, since in (("hour", now - HOUR), ("day", now - DAY)):
        rows = store.summary(since=since)
        row = rows[0] if rows else {}
        share[window] = {f: int(row.get(f, 0)) for f in FLEET_FIELDS}
        share[window]["cost"] = _money(row.get("cost", Decimal(0)))
    return share


def fleet_sum(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The fleet's totals: the sum of every instance's fresh share."""
    entries = list(entries)
    out: dict[str, Any] = {"instances": len(entries)}
    for window in ("hour", "day"):
        total: dict[str, Any] = dict.fromkeys(FLEET_FIELDS, 0)
        cost = Decimal(0)
        for entry in entries:
            part = entry.get(window) or {}
            for f in FLEET_FIELDS:
                total[f] += int(part.get(f, 0))
            cost += Decimal(str(part.get("cost", "0")))
        total["cost"] = _money(cost)
        total["error_rate"] = total["errors"] / total["requests"] if total["requests"] else 0.0
        out[window] = total
    return out
