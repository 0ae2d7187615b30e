"""Reading the ledger for dashboards and comparisons: latency percentiles, time
series and error kinds, grouped like :meth:`LedgerStore.summary`.

Every function reads with one SQL query (SQLite's window functions for the
percentiles: nearest rank, exact over the rows of the window), under the store's
lock; ``since`` and ``until`` are epoch seconds, ``by`` one of :data:`GROUPS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmkernel_ledger.errors import sqlite_errors
from llmkernel_ledger.store import GROUP_SQL, GROUPS

if TYPE_CHECKING:
    from llmkernel_ledger.store import LedgerStore

__all__ = ["compare", "error_kinds", "percentiles", "series", "variants"]

#: the columns whose percentiles are read: the call's latency, a stream's first event
TIMINGS = ("latency", "first_event_latency")


def _group(by: str | None) -> str:
    if by is None:
        return "'all'"
    if by not in GROUPS:
        raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(GROUPS)}")
    return GROUP_SQL[by]


def _window(since: float | None, until: float | None, extra: str = "") -> tuple[str, list[Any]]:
    parts, params = ([extra] if extra else []), []
    if since is not None:
        parts.append("ts >= ?")
        params.append(since)
    if until is not None:
        parts.append("ts < ?")
        params.append(until)
    return ("WHERE " + " AND ".join(parts)) if parts else "", params


def percentiles(
    store: LedgerStore,
    column: str,
    *,
    by: str | None = None,
    since: float | None = None,
    until: float | None = None,
    shares: Sequence[float] = (0.5, 0.95),
) -> dict[Any, dict[float, float]]:
    """``{group: {share: seconds}}``: the nearest-rank percentiles of ``column``
    (one of :data:`TIMINGS`) over the answered calls (status ``ok``) that have it."""
    if column not in TIMINGS:
        raise ValueError(f"no percentiles of {column!r}; choose one of {', '.join(TIMINGS)}")
    clause, params = _window(since, until, f"status = 'ok' AND {column} IS NOT NULL")
    # rank k of share p among n is ceil(p * n), at least 1
    wanted = " OR ".join(
        f"rn = max(1, CAST({p!r} * n AS INTEGER) + ({p!r} * n > CAST({p!r} * n AS INTEGER)))"
        for p in shares
    )
    sql = (
        "SELECT grp, rn, n, value FROM ("
        f"SELECT {_group(by)} AS grp, {column} AS value, "
        f"row_number() OVER (PARTITION BY {_group(by)} ORDER BY {column}) AS rn, "
        f"count(*) OVER (PARTITION BY {_group(by)}) AS n FROM requests {clause}"
        f") WHERE {wanted}"
    )
    with store.lock, sqlite_errors(store.path, "read the ledger"):
        found = store.conn.execute(sql, params).fetchall()
    out: dict[Any, dict[float, float]] = {}
    for group, rank, count, value in found:
        for share in shares:
            if rank == max(1, -int(-share * count // 1)):
                out.setdefault(group, {})[share] = float(value)
    return out


def series(store: LedgerStore, *, step: int, since: float, until: float) -> list[dict[str, Any]]:
    """The calls from ``since`` to ``until`` in buckets of ``step`` seconds (aligned
    to the epoch), every bucket present, oldest first: ``start`` (epoch seconds),
    ``requests``, ``errors`` (status not ``ok``), ``cached``, ``input_tokens``,
    ``output_tokens`` and ``cost`` (``Decimal``, the priced calls)."""
    clause, params = _window(since, until)
    sql = (
        f"SELECT CAST(ts / {int(step)} AS INTEGER) AS bucket, count(*), sum(status != 'ok'), "
        "sum(cached), sum(input_tokens), sum(output_tokens), decimal_sum(cost) "
        f"FROM requests {clause} GROUP BY bucket"
    )
    with store.lock, sqlite_errors(store.path, "read the ledger"):
        found = {row[0]: row[1:] for row in store.conn.execute(sql, params).fetchall()}
    out = []
    for bucket in range(int(since // step), int((until - 1e-9) // step) + 1):
        requests, errors, cached, input_tokens, output_tokens, cost = found.get(
            bucket, (0, 0, 0, 0, 0, None)
        )
        out.append(
            {
                "start": bucket * step,
                "requests": int(requests),
                "errors": int(errors or 0),
                "cached": int(cached or 0),
                "input_tokens": int(input_tokens or 0),
                "output_tokens": int(output_tokens or 0),
                "cost": Decimal(cost) if cost is not None else Decimal(0),
            }
        )
    return out


def error_kinds(
    store: LedgerStore,
    *,
    by: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> dict[Any, dict[str, int]]:
    """``{group: {kind: calls}}`` of the calls that did not end ``ok``: the error's
    kind (``rate_limit``, ``budget``, ``timeout``...), else the status
    (``cancelled``, ``abandoned``)."""
    clause, params = _window(since, until, "status != 'ok'")
    sql = (
        f"SELECT {_group(by)} AS grp, coalesce(error_kind, status) AS what, count(*) "
        f"FROM requests {clause} GROUP BY grp, what ORDER BY grp, what"
    )
    with store.lock, sqlite_errors(store.path, "read the ledger"):
        found = store.conn.execute(sql, params).fetchall()
    out: dict[Any, dict[str, int]] = {}
    for group, kind, count in found:
        out.setdefault(group, {})[str(kind)] = int(count)
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def compare(
    store: LedgerStore,
    by: str | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
) -> dict[Any, dict[str, Any]]:
    """Per group (``None``: every call as ``"all"``): the summary's sums plus
    ``error_rate``, ``errors_by_kind``, ``latency_p50_ms``, ``latency_p95_ms``,
    ``ttft_p50_ms`` and ``ttft_p95_ms``. Groups whose value is NULL (calls of no
    experiment, grouped by variant) are left out."""
    rows = store.summary(by, since=since, until=until)
    latency = percentiles(store, "latency", by=by, since=since, until=until)
    ttft = percentiles(store, "first_event_latency", by=by, since=since, until=until)
    kinds = error_kinds(store, by=by, since=since, until=until)
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        group = row.pop(by or "group")
        if group is None:
            continue
        timing, first = latency.get(group, {}), ttft.get(group, {})
        requests = row["requests"]
        row.update(
            error_rate=row["errors"] / requests if requests else 0.0,
            errors_by_kind=kinds.get(group, {}),
            latency_p50_ms=_ms(timing.get(0.5)),
            latency_p95_ms=_ms(timing.get(0.95)),
            ttft_p50_ms=_ms(first.get(0.5)),
            ttft_p95_ms=_ms(first.get(0.95)),
        )
        out[group] = row
    return out


def variants(
    store: LedgerStore, *, since: float | None = None, until: float | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{experiment: {variant: numbers}}``: :func:`compare` by variant, each with
    its ``share`` of the experiment's calls."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, row in compare(store, "variant", since=since, until=until).items():
        experiment, _, variant = str(name).rpartition("/")
        out.setdefault(experiment, {})[variant] = row
    for rows in out.values():
        total = sum(r["requests"] for r in rows.values())
        for row in rows.values():
            row["share"] = row["requests"] / total if total else 0.0
    return out
