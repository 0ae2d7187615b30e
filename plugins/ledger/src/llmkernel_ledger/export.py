"""Summaries and rows as CSV, JSON or an aligned text table."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TextIO

__all__ = ["write_csv", "write_json", "write_table"]


def _plain(value: Any) -> Any:
    return format(value, "f") if isinstance(value, Decimal) else value


def write_csv(rows: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    """Rows as CSV with a header; money as exact decimal text. Returns the count."""
    writer: csv.DictWriter[str] | None = None
    count = 0
    for row in rows:
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
            writer.writeheader()
        writer.writerow({k: _plain(v) for k, v in row.items()})
        count += 1
    return count


def write_json(rows: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    """Rows as a JSON array; money as decimal strings (exact, never floats)."""
    data = [{k: _plain(v) for k, v in row.items()} for row in rows]
    json.dump(data, out, indent=2)
    out.write("\n")
    return len(data)


def write_table(rows: Sequence[Mapping[str, Any]], columns: list[str], out: TextIO) -> None:
    cells = [
        [str(_plain(row.get(c, "")) if row.get(c) is not None else "-") for c in columns]
        for row in rows
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for r in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
