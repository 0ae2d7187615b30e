"""A/B tests in the ledger: each call's experiment and variant in its row, the
split held over 10,000 calls with every caller kept on one variant, the
comparison (``llmkernel stats --by variant``, ``costs --by variant``), and a
database from before the variant columns migrated with nothing lost."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import sqlite3
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmkernel import Kernel
from llmkernel_ledger import report
from llmkernel_ledger.cli import add_arguments, run, run_variants
from llmkernel_ledger.plugin import ledger_for
from llmkernel_ledger.store import COLUMNS, LedgerRow, LedgerStore

CALLS = 10_000
CALLERS = 2_500  # four calls each


def experiment_kernel(tmp_path: Path) -> Kernel:
    pytest.importorskip("llmkernel_mock")
    return Kernel.from_config(
        {
            "providers": {"a": {"type": "mock"}, "b": {"type": "mock"}},
            "prices": {
                "a/chat": {"input": "1", "output": "2"},
                "b/chat": {"input": "3", "output": "4"},
            },
            "models": {
                "summarize": {
                    "variants": {"x": "a/chat", "y": "b/chat"},
                    "split": {"x": 0.9, "y": 0.1},
                    "by": ["tenant"],
                },
            },
            # rows committed in the background: 10,000 calls in a few seconds
            "plugin": {"ledger": {"path": str(tmp_path / "l.db"), "durability": "fast"}},
        }
    )


def test_a_split_holds_over_10000_calls_and_every_row_carries_its_variant(
    tmp_path: Path,
) -> None:
    async def main(kernel: Kernel) -> None:
        async def caller(i: int) -> None:
            for _ in range(CALLS // CALLERS):
                await kernel.achat("summarize", "hi", metadata={"tenant": f"t{i}"})

        for start in range(0, CALLERS, 250):
            await asyncio.gather(*(caller(i) for i in range(start, start + 250)))

    with experiment_kernel(tmp_path) as kernel:
        asyncio.run(main(kernel))
        ledger = ledger_for(kernel)
        assert ledger.writer.flush()
        rows = list(ledger.store.rows())
        compared = report.variants(ledger.store)
    assert len(rows) == CALLS
    by_caller: dict[str, set[str | None]] = defaultdict(set)
    for row in rows:
        assert row["experiment"] == "summarize"
        assert row["provider"] == {"x": "a", "y": "b"}[row["variant"]]
        by_caller[row["tenant"]].add(row["variant"])
    assert len(by_caller) == CALLERS
    assert all(len(seen) == 1 for seen in by_caller.values())  # sticky
    counts = Counter(row["variant"] for row in rows)
    assert abs(counts["x"] / CALLS - 0.9) <= 0.02
    assert abs(counts["y"] / CALLS - 0.1) <= 0.02
    # the comparison reads the same numbers
    x, y = compared["summarize"]["x"], compared["summarize"]["y"]
    assert (x["requests"], y["requests"]) == (counts["x"], counts["y"])
    assert x["share"] == pytest.approx(counts["x"] / CALLS)
    assert x["errors"] == y["errors"] == 0
    assert x["latency_p50_ms"] is not None and x["latency_p95_ms"] >= x["latency_p50_ms"]
    per_call_x = x["cost"] / x["requests"]
    per_call_y = y["cost"] / y["requests"]
    assert per_call_y > per_call_x > 0  # b's price is higher


def rows_of_two_variants() -> list[LedgerRow]:
    rows = []
    for i in range(40):
        variant = "x" if i % 4 else "y"
        rows.append(
            LedgerRow(
                request_id=f"r{i}",
                ts=1_764_460_800.0 + i,
                provider="a" if variant == "x" else "b",
                model="chat",
                experiment="summarize",
                variant=variant,
                status="ok" if i % 10 else "error",
                error_kind=None if i % 10 else "timeout",
                latency=(i + 1) / 100,
                input_tokens=10,
                output_tokens=5,
                cost=Decimal("0.001"),
            )
        )
    rows.append(LedgerRow(request_id="plain", ts=1_764_460_900.0, model="other"))
    return rows


def test_the_comparison_of_variants(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.db")
    store.write(rows_of_two_variants())
    found = report.variants(store)
    assert list(found) == ["summarize"]  # the call of no experiment is left out
    x, y = found["summarize"]["x"], found["summarize"]["y"]
    assert (x["requests"], y["requests"]) == (30, 10)
    # errors: r10, r20, r30 are x (i % 4 != 0 for 10 and 30; 20 is y) -> x 2, y 2
    assert (x["errors"], y["errors"]) == (2, 2)
    assert x["errors_by_kind"] == {"timeout": 2}
    assert x["cost"] == Decimal("0.030") and y["share"] == 0.25
    # nearest rank over x's answered calls (latency i+1 hundredths, i % 4 != 0)
    answered = sorted((i + 1) / 100 for i in range(40) if i % 4 and i % 10)

    def rank(share: float) -> float:  # nearest rank: the ceil(share * n)-th
        return round(answered[math.ceil(share * len(answered)) - 1] * 1000, 2)

    assert (x["latency_p50_ms"], x["latency_p95_ms"]) == (rank(0.5), rank(0.95))
    grouped = {r["variant"]: r for r in store.summary("variant")}
    assert grouped["summarize/x"]["requests"] == 30 and None in grouped  # costs --by variant


def test_stats_and_costs_by_variant_print_the_comparison(tmp_path: Path) -> None:
    from llmkernel.config import Config
    from llmkernel_ledger import plugin

    from .test_plugin import StubKernel

    config = Config.load({"plugin": {"ledger": {"path": str(tmp_path / "l.db")}}})
    stub = StubKernel(config)
    plugin.configure(kernel=stub, config=config)
    ledger = ledger_for(stub)  # type: ignore[arg-type]
    ledger.store.write(rows_of_two_variants())
    out = io.StringIO()
    run_variants(argparse.Namespace(json=False), ledger, out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:4] == ["EXPERIMENT", "VARIANT", "REQ", "SHARE"]
    assert lines[1].split()[:4] == ["summarize", "x", "30", "75.0%"]
    assert lines[2].split()[:4] == ["summarize", "y", "10", "25.0%"]
    out = io.StringIO()
    run_variants(argparse.Namespace(json=True), ledger, out)
    data = json.loads(out.getvalue())
    assert data[0]["variant"] == "x" and data[0]["cost"] == "0.030"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = io.StringIO()
    run(parser.parse_args(["--by", "variant", "--since", "2025-11-01", "--json"]), ledger, out)
    costs = {r["variant"]: r for r in json.loads(out.getvalue())}
    assert costs["summarize/y"]["requests"] == 10
    stub.close()


def test_a_database_from_before_the_variant_columns_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = LedgerStore(path)
    old.write([LedgerRow(request_id=f"old{i}", ts=1.0 + i, cost=Decimal("0.5")) for i in range(3)])
    before = [r[1:] for r in old.conn.execute("SELECT * FROM requests ORDER BY id")]
    # the file as version 3 left it: no experiment or variant columns
    old.conn.execute("DROP INDEX requests_variant")
    old.conn.execute("ALTER TABLE requests DROP COLUMN variant")
    old.conn.execute("ALTER TABLE requests DROP COLUMN experiment")
    old.conn.execute("DELETE FROM migrations WHERE version = 4")
    old.close()
    store = LedgerStore(path)
    columns = [r[1] for r in store.conn.execute("PRAGMA table_info(requests)")]
    assert columns[-2:] == ["experiment", "variant"] and set(COLUMNS) <= set(columns)
    after = [r[1:-2] for r in store.conn.execute("SELECT * FROM requests ORDER BY id")]
    assert [r[: len(after[0])] for r in before] == after  # every value kept
    assert store.total() == Decimal("1.5")
    store.write([LedgerRow(request_id="new", ts=9.0, experiment="e", variant="a")])
    rows: list[dict[str, Any]] = list(store.rows())
    assert [r["variant"] for r in rows] == [None, None, None, "a"]
    versions = [v for (v,) in store.conn.execute("SELECT version FROM migrations")]
    assert versions.count(4) == 1
    assert isinstance(store.conn, sqlite3.Connection)
