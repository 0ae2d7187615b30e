"""The ledger store and writer against plain data: exact sums, once per call,
several processes, SIGKILL mid-burst."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from llmkernel_ledger.export import write_csv, write_json
from llmkernel_ledger.record import key_label
from llmkernel_ledger.store import COLUMNS, LedgerRow, LedgerStore
from llmkernel_ledger.writer import LedgerWriter

T0 = 1_764_460_800.0  # 2025-11-30T00:00:00Z


def row(i: int, **kw: object) -> LedgerRow:
    values: dict[str, object] = {
        "request_id": f"r{i}",
        "ts": T0 + i,
        "provider": "oa",
        "model": "gpt-4.1",
        "input_tokens": 10,
        "output_tokens": 5,
        "cost": Decimal("0.000035"),
    }
    values.update(kw)
    return LedgerRow(**values)  # type: ignore[arg-type]


def test_exact_sums_and_groups(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.db")
    store.write([row(i) for i in range(10)])
    store.write([row(10, provider="an", model="claude", cost=Decimal("0.1"), tenant="acme")])
    store.write([row(11, cost=None, status="ok")])  # unpriced
    store.write([row(12, cost=None, status="error", error_kind="rate_limit")])
    # 10 * 0.000035 + 0.1, exactly: floats would give 0.10034999999999999
    assert store.total() == Decimal("0.100350")
    by_provider = {r["provider"]: r for r in store.summary("provider")}
    assert by_provider["oa"]["cost"] == Decimal("0.000350")
    assert by_provider["oa"]["requests"] == 12
    assert by_provider["oa"]["unpriced"] == 1
    assert by_provider["oa"]["errors"] == 1
    assert by_provider["an"]["cost"] == Decimal("0.1")
    tenants = {r["tenant"]: r["requests"] for r in store.summary("tenant")}
    assert tenants == {None: 12, "acme": 1}
    assert [r["day"] for r in store.summary("day")] == ["2025-11-30"]
    # the same model name on two providers is two models
    store.write([row(13, provider="az", model=row(0).model)])
    by_model = {r["model"]: r["requests"] for r in store.summary("model")}
    assert by_model == {f"oa/{row(0).model}": 12, "an/claude": 1, f"az/{row(0).model}": 1}
    with pytest.raises(ValueError, match="cannot group by 'cost'"):
        store.summary("cost")


def test_days_follow_the_configured_time_zone(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.db", timezone="America/New_York")
    store.write([row(0)])  # midnight UTC is the evening before in New York
    assert [r["day"] for r in store.summary("day")] == ["2025-11-29"]
    assert [r["month"] for r in store.summary("month")] == ["2025-11"]


def test_each_call_recorded_once(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.db")
    assert store.write([row(1), row(1)]) == 1
    assert store.write([row(1)]) == 0
    assert store.count() == 1


def test_migrations_recorded_and_not_rerun(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    LedgerStore(path).write([row(1)])
    store = LedgerStore(path)
    store.add_migrations([(1000, ["CREATE TABLE extra (x INTEGER)"])])
    LedgerStore(path).add_migrations([(1000, ["CREATE TABLE extra (x INTEGER)"])])
    versions = [r[0] for r in store.conn.execute("SELECT version FROM migrations ORDER BY 1")]
    assert versions == [1, 2, 3, 4, 1000]
    assert store.count() == 1
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writer_flushes_everything_on_close(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.db")
    writer = LedgerWriter(store, batch=7)
    for i in range(100):
        writer.offer(row(i))
    writer.close()
    assert store.count() == 100
    assert writer.written == 100
    writer.offer(row(1000))  # after close: written at once, never lost in a dead queue
    assert store.count() == 101


def test_listener_runs_in_the_transaction_and_after_commit(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.db")
    store.add_migrations([(1000, ["CREATE TABLE seen (request_id TEXT)"])])
    committed: list[int] = []

    def listener(conn: sqlite3.Connection, rows: object) -> list[object]:
        for r in rows:  # type: ignore[attr-defined]
            conn.execute("INSERT INTO seen VALUES (?)", (r.request_id,))
        return [lambda: committed.append(store.count())]

    store.add_listener(listener)  # type: ignore[arg-type]
    store.write([row(1), row(2)])
    store.write([row(2)])  # duplicate: no listener call
    assert store.conn.execute("SELECT count(*) FROM seen").fetchone()[0] == 2
    assert committed == [2]


def test_rows_and_sql_tasks_of_one_drain_commit_once_in_order(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.db")
    store.add_migrations([(1000, ["CREATE TABLE log (what TEXT)"])])
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    writer = LedgerWriter(store)

    def task(i: int) -> object:
        def run(conn: sqlite3.Connection) -> None:
            seen = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
            conn.execute("INSERT INTO log VALUES (?)", (f"task{i} after {seen} rows",))

        return run

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO log VALUES ('rolled back')")
        raise RuntimeError("boom")

    with store.lock:  # the writer waits: everything below queues up behind row 0
        writer.offer(row(0))
        for i in range(1, 21):
            writer.offer(row(i))
            writer.submit_sql(task(i))  # type: ignore[arg-type]
        writer.submit_sql(failing)
    assert writer.flush()
    commits = [s for s in statements if s.strip().upper() == "COMMIT"]
    assert 1 <= len(commits) <= 2  # row 0 alone at most, then one for the burst
    logged = [r[0] for r in store.conn.execute("SELECT what FROM log ORDER BY rowid")]
    assert logged == [f"task{i} after {i + 1} rows" for i in range(1, 21)]
    assert store.count() == 21 and writer.written == 21 and writer.failed == 0
    writer.close()


def test_a_burst_is_one_wake_up_and_one_commit(tmp_path: Path) -> None:
    """Woken by the first row, the writer lingers: the rest of the burst (offered
    with no wake-up) commits in the same transaction."""
    store = LedgerStore(tmp_path / "l.db")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    writer = LedgerWriter(store, linger=0.5)
    for i in range(50):
        writer.offer(row(i))
    assert writer.flush()
    commits = [s for s in statements if s.strip().upper() == "COMMIT"]
    assert len(commits) == 1 and store.count() == 50 == writer.written
    writer.close()


def test_row_values_match_columns_across_days(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    store = LedgerStore(tmp_path / "l.db", timezone="Europe/Paris")
    # 22:59:59 and 23:00:00 UTC on 2025-11-30: the second is the 1st of December in Paris
    late, midnight = 1_764_543_599.0, 1_764_543_600.0
    store.write([row(1, ts=late), row(2, ts=midnight), row(3, ts=late - 10)])
    days = [(r["request_id"], r["day"]) for r in store.db["requests"].rows]
    assert days == [("r1", "2025-11-30"), ("r2", "2025-12-01"), ("r3", "2025-11-30")]
    values = row(4, ts=midnight).values(paris)
    assert values["month"] == "2025-12" and values["cost"] == "0.000035"
    assert list(values) == list(COLUMNS)


def test_sql_task_after_close_runs_in_its_own_transaction(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.db")
    writer = LedgerWriter(store)
    writer.offer(row(1))
    writer.close()
    writer.submit_sql(lambda conn: conn.execute("DELETE FROM requests"))
    assert store.count() == 0


def test_export_csv_and_json_keep_money_exact(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.db")
    store.write([row(1, cost=Decimal("0.000000075"))])
    out = io.StringIO()
    write_csv(store.rows(), out)
    assert "0.000000075" in out.getvalue().splitlines()[1]
    out = io.StringIO()
    write_json(store.summary("model"), out)
    assert json.loads(out.getvalue())[0]["cost"] == "0.000000075"


def test_secret_looking_keys_are_hashed() -> None:
    assert key_label("team-a") == "team-a"
    label = key_label("sk-live-0123456789abcdef")
    assert label is not None and label.startswith("sha256:") and "0123456789" not in label


CHILD = textwrap.dedent(
    """
    import sys
    from decimal import Decimal
    from llmkernel_ledger.store import LedgerRow, LedgerStore
    from llmkernel_ledger.writer import LedgerWriter

    path, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = LedgerStore(path)

    def report(conn, rows):
        last = rows[-1].request_id
        return [lambda: print(last, flush=True)]

    store.add_listener(report)
    writer = LedgerWriter(store, batch=5)
    for i in range(count):
        writer.offer(LedgerRow(request_id=f"{prefix}{i}", ts=float(i), cost=Decimal("0.001")))
        if i % 5 == 4:
            writer.flush()
    writer.close()
    """
)


def _child(path: Path, prefix: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), prefix, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_two_processes_write_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    LedgerStore(path)  # migrate first; the children also would, safely
    children = [_child(path, prefix, 300) for prefix in ("a", "b")]
    for child in children:
        child.communicate(timeout=120)
        assert child.returncode == 0
    store = LedgerStore(path)
    assert store.count() == 600
    assert store.total() == Decimal("0.600")


def test_sigkill_mid_burst_keeps_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    child = _child(path, "k", 100_000)
    assert child.stdout is not None
    committed: list[str] = []
    deadline = time.monotonic() + 60
    while len(committed) < 50 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        committed.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert len(committed) >= 50, "the writer never got going"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    last = int(committed[-1][1:])
    # every row reported committed is there, and rows come in whole transactions
    assert {f"k{i}" for i in range(last + 1)} <= ids
    assert len(ids) % 5 == 0
    assert len(ids) < 100_000
    store = LedgerStore(path)  # reopens and writes fine after the crash
    store.write([LedgerRow(request_id="after", ts=1.0)])
    assert store.count() == len(ids) + 1


def test_a_database_from_before_the_metadata_column_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    old = LedgerStore(path)
    old.conn.execute("ALTER TABLE requests DROP COLUMN metadata")
    old.conn.execute("DELETE FROM migrations WHERE version = 2")
    old.conn.commit()
    store = LedgerStore(path)
    store.write([row(1)])
    columns = [r[1] for r in store.conn.execute("PRAGMA table_info(requests)")]
    assert "metadata" in columns and store.count() == 1
    assert isinstance(store.conn, sqlite3.Connection)
