"""``llmkernel costs``: totals for today and this month, or a grouped summary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import datetime, time
from typing import TYPE_CHECKING, Any, TextIO

from llmkernel_ledger.store import GROUPS

if TYPE_CHECKING:
    from llmkernel_ledger.plugin import Ledger

__all__ = ["add_arguments", "run", "run_variants", "variant_rows", "write_variants"]

_COLUMNS = ["requests", "errors", "unpriced", "input_tokens", "output_tokens", "cost"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--by",
        choices=[g for g in GROUPS if g != "status"] + ["status"],
        help="group the summary by this column",
    )
    parser.add_argument(
        "--since",
        metavar="YYYY-MM-DD",
        help="from this day on, in the ledger's time zone "
        "(default with --by: the first of this month)",
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    fmt.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--rows",
        action="store_true",
        help="export every row (with --csv or --json) instead of a summary",
    )


def run(args: argparse.Namespace, ledger: Ledger, out: TextIO | None = None) -> int:
    from llmkernel.errors import ConfigError
    from llmkernel_ledger.export import write_csv, write_json, write_table

    out = out or sys.stdout
    ledger.writer.flush()
    store = ledger.store
    now = datetime.now(store.tz)
    if args.since:
        try:
            day = datetime.strptime(args.since, "%Y-%m-%d").date()
        except ValueError:
            raise ConfigError(f"--since {args.since!r} is not a YYYY-MM-DD date") from None
        since = datetime.combine(day, time(), store.tz).timestamp()
    else:
        since = None
    if args.rows:
        rows = store.rows(since=since)
        (write_json if args.json else write_csv)(rows, out)
        return 0
    if args.by:
        start = (
            since
            if since is not None
            else now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        )
        table = store.summary(args.by, since=start)
        columns = [args.by, *_COLUMNS]
    else:
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        month = today.replace(day=1)
        periods: list[tuple[str, float]] = [
            ("today", today.timestamp()),
            ("this month", month.timestamp()),
        ]
        if since is not None:
            periods = [(f"since {args.since}", since)]
        table = []
        for label, start in periods:
            found = store.summary(None, since=start)
            row: dict[str, Any] = found[0] if found else {c: 0 for c in _COLUMNS}
            row["period"] = label
            table.append(row)
        columns = ["period", *_COLUMNS]
    if args.json:
        write_json([{c: r.get(c) for c in columns} for r in table], out)
    elif args.csv:
        write_csv([{c: r.get(c) for c in columns} for r in table], out)
    else:
        write_table(table, columns, out)
    return 0


#: ``llmkernel stats --by variant``: (title, field) of each column
VARIANT_COLUMNS = (
    ("EXPERIMENT", "experiment"),
    ("VARIANT", "variant"),
    ("REQ", "requests"),
    ("SHARE", "share"),
    ("ERR", "errors"),
    ("ERR%", "error_rate"),
    ("P50 MS", "latency_p50_ms"),
    ("P95 MS", "latency_p95_ms"),
    ("TTFT P50", "ttft_p50_ms"),
    ("TTFT P95", "ttft_p95_ms"),
    ("IN TOK", "input_tokens"),
    ("OUT TOK", "output_tokens"),
    ("COST", "cost"),
)


def variant_rows(found: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """``report.variants`` (or a gateway's ``experiments``) as flat rows, in order."""
    return [
        {"experiment": experiment, "variant": variant, **found[experiment][variant]}
        for experiment in sorted(found)
        for variant in sorted(found[experiment])
    ]


def write_variants(
    found: Mapping[str, Mapping[str, Mapping[str, Any]]], out: TextIO, *, as_json: bool = False
) -> None:
    """The comparison of each experiment's variants: a table, or JSON."""
    from llmkernel_ledger.export import write_json, write_table

    rows = variant_rows(found)
    if as_json:
        write_json(rows, out)
        return
    if not rows:
        out.write("no calls of an experiment in the ledger ([models.NAME] variants)\n")
        return
    shown = []
    for row in rows:
        cells = {field: row.get(field) for _, field in VARIANT_COLUMNS}
        cells["share"] = f"{float(row.get('share') or 0) * 100:.1f}%"
        cells["error_rate"] = f"{float(row.get('error_rate') or 0) * 100:.1f}%"
        shown.append({title: cells[field] for title, field in VARIANT_COLUMNS})
    write_table(shown, [title for title, _ in VARIANT_COLUMNS], out)


def run_variants(args: argparse.Namespace, ledger: Ledger, out: TextIO | None = None) -> int:
    """``llmkernel stats --by variant``: every experiment's variants, from the ledger."""
    from llmkernel_ledger.report import variants

    ledger.writer.flush()
    write_variants(variants(ledger.store), out or sys.stdout, as_json=bool(args.json))
    return 0
