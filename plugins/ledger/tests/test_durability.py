"""A call returns only once its row is committed (durable, the default); a file that
fails is retried, then fails the call naming the file, and its rows are written
when it works again; ``durability = "fast"`` keeps rows in memory meanwhile; after
SIGKILL every answer a caller had is in the file; files are private (0600).

Real kernels on the offline mock provider, a real SQLite file broken for real: held
locked by another connection, or made immutable (``chattr +i``, as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from llmkernel import Kernel
from llmkernel_ledger.errors import LedgerError
from llmkernel_ledger.plugin import ledger_for

pytest.importorskip("llmkernel_mock")


@contextlib.contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """structlog's ``capture_logs``, leaving structlog unconfigured after if it was
    (``capture_logs`` leaves it configured, and the kernel's events then go to
    structlog instead of the standard library logger other tests read)."""
    was = structlog.is_configured()
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        if not was:
            structlog.reset_defaults()


def make_kernel(path: Path, **ledger: Any) -> Kernel:
    return Kernel.from_config(
        {
            "providers": {"sim": {"type": "mock"}},
            "prices": {"sim/echo": {"input": "1", "output": "2"}},
            "plugin": {"ledger": {"path": str(path), **ledger}},
        }
    )


def count(path: Path) -> int:
    """Rows as another process sees them (a connection of its own, no flush)."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])
    finally:
        conn.close()


def test_a_call_returns_only_once_its_row_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with make_kernel(path) as kernel:
        for i in range(5):
            kernel.chat(model="sim/echo", messages=f"call {i}")
            assert count(path) == i + 1
        events = [e.type for e in kernel.stream(model="sim/echo", messages="one two")]
        assert events[-1] == "finish" and count(path) == 6

    async def many() -> None:
        async with make_kernel(path) as kernel:

            async def one(i: int) -> None:
                await kernel.achat(model="sim/echo", messages=f"a{i}")
                assert count(path) >= 7  # its own row at least is in

            await asyncio.gather(*(one(i) for i in range(40)))
            assert count(path) == 46  # 40 callers, group-committed, all durable on return

    asyncio.run(many())


class Lock:
    """Another connection holds the write lock (another process mid-transaction)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)

    def __enter__(self) -> Lock:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.conn.close()


@pytest.fixture
def immutable() -> Iterator[Any]:
    """``make(path)`` makes the database file and its WAL immutable (the disk refuses
    every write, even through open descriptors); ``make.undo()``, and at the end."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr to make a file unwritable to its owner")
    touched: list[Path] = []

    def run(flag: str, paths: list[Path]) -> None:
        for p in paths:
            done = subprocess.run(["chattr", flag, str(p)], capture_output=True, check=False)
            if done.returncode != 0:
                pytest.skip(f"chattr {flag} failed: {done.stderr.decode().strip()}")

    def make(path: Path) -> None:
        # (not the -shm: SQLite maps it in memory, and a write to an immutable mapped
        # file is a SIGBUS, not an error)
        files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
        touched.extend(files)
        run("+i", files)

    def undo() -> None:
        run("-i", touched)
        touched.clear()

    make.undo = undo  # type: ignore[attr-defined]
    yield make
    if touched:
        undo()


def test_durable_calls_fail_naming_the_file_while_it_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with make_kernel(path, busy_timeout=0.05, write_timeout=0.2) as kernel:
        kernel.chat(model="sim/echo", messages="before")
        with Lock(path) as lock:
            for i in range(3):
                started = time.monotonic()
                with pytest.raises(LedgerError, match="could not write") as info:
                    kernel.chat(model="sim/echo", messages=f"locked {i}")
                assert info.value.path == str(path) and str(path) in str(info.value)
                if i == 0:  # the first failure is retried for write_timeout
                    assert time.monotonic() - started >= 0.2
            assert ledger_for(kernel).writer.held_rows == 3
            lock.release()
            kernel.chat(model="sim/echo", messages="after")
        # the held rows went first, then the new one: nothing of what was billed lost
        assert count(path) == 5


def test_durable_calls_fail_while_the_file_is_unwritable_then_recover(
    tmp_path: Path, immutable: Any
) -> None:
    path = tmp_path / "l.db"
    with make_kernel(path, write_timeout=0.1) as kernel:
        kernel.chat(model="sim/echo", messages="before")
        immutable(path)
        failures = 0
        for i in range(20):
            try:
                kernel.chat(model="sim/echo", messages=f"call {i}")
            except LedgerError as exc:
                assert str(path) in str(exc)
                failures += 1
        assert failures == 20  # none returned as if recorded
        immutable.undo()
        kernel.chat(model="sim/echo", messages="after")
        assert count(path) == 22


def test_fast_mode_keeps_rows_in_memory_and_writes_them_when_the_file_is_back(
    tmp_path: Path, immutable: Any
) -> None:
    path = tmp_path / "l.db"
    with make_kernel(path, durability="fast", write_timeout=0.1) as kernel:
        kernel.chat(model="sim/echo", messages="before")
        assert ledger_for(kernel).writer.flush()
        immutable(path)
        for i in range(20):
            kernel.chat(model="sim/echo", messages=f"call {i}")  # never fails
        writer = ledger_for(kernel).writer
        assert not writer.flush(timeout=10)  # held, not written
        assert writer.held_rows == 20 and writer.dropped == 0
        immutable.undo()
        deadline = time.monotonic() + 10
        while count(path) < 21 and time.monotonic() < deadline:  # no new call needed
            time.sleep(0.05)
        assert count(path) == 21 and writer.held_rows == 0


def test_fast_mode_bound_drops_the_oldest_rows_with_a_log(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with make_kernel(
        path, durability="fast", buffer=5, busy_timeout=0.02, write_timeout=0
    ) as kernel:
        kernel.chat(model="sim/echo", messages="before")
        writer = ledger_for(kernel).writer
        assert writer.flush()
        with captured_logs() as logs, Lock(path) as lock:
            for i in range(8):
                kernel.chat(model="sim/echo", messages=f"call {i}", metadata={"n": str(i)})
                writer.flush(timeout=10)
            assert writer.held_rows == 5 and writer.dropped == 3
            lock.release()
            assert writer.flush(timeout=10)
        dropped = [e for e in logs if e["event"] == "llmkernel.ledger.rows_dropped"]
        assert dropped and sum(e["rows"] for e in dropped) == 3
        assert dropped[0]["path"] == str(path) and dropped[0]["buffer"] == 5
    conn = sqlite3.connect(path)
    kept = [r[0] for r in conn.execute("SELECT metadata FROM requests WHERE metadata IS NOT NULL")]
    conn.close()
    assert sorted(kept) == [f'{{"n": "{i}"}}' for i in range(3, 8)]  # the newest five


def test_a_full_disk_fails_durable_waiters_and_is_written_later(tmp_path: Path) -> None:
    """SQLite's own page limit makes the file full: writes fail with "database or
    disk is full" exactly as on a full disk."""
    from llmkernel_ledger.store import LedgerRow, LedgerStore
    from llmkernel_ledger.writer import LedgerWriter

    store = LedgerStore(tmp_path / "l.db")
    writer = LedgerWriter(store, linger=0, write_timeout=0.1, retry_every=0.05)
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    for conn in store.connections:  # the limit is a connection's: the file is full for both
        conn.execute(f"PRAGMA max_page_count = {pages}")
    big = "x" * 20_000  # every row needs pages of its own

    async def offer(n: int) -> list[BaseException | None]:
        waits = [
            writer.offer(LedgerRow(request_id=f"r{i}", ts=1.0, metadata=big), wait=True)
            for i in range(n)
        ]
        return await asyncio.gather(*waits, return_exceptions=True)  # type: ignore[arg-type]

    results = asyncio.run(offer(4))
    assert all(isinstance(r, LedgerError) and "full" in str(r) for r in results)
    assert writer.held_rows == 4
    for conn in store.connections:
        conn.execute("PRAGMA max_page_count = 1073741823")
    deadline = time.monotonic() + 10
    while writer.held_rows and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.count() == 4
    writer.close()


def test_ledger_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "l.db"
    with make_kernel(path) as kernel:
        kernel.chat(model="sim/echo", messages="hi")
        for name in ("l.db", "l.db-wal", "l.db-shm"):
            mode = stat.S_IMODE((path.parent / name).stat().st_mode)
            assert mode == 0o600, f"{name} is {oct(mode)}"
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_its_own_rows(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with make_kernel(path) as kernel:
        kernel.chat(model="sim/echo", messages="parent")
        pid = os.fork()
        if pid == 0:  # the child: a connection and a writer of its own
            code = 1
            try:
                kernel.chat(model="sim/echo", messages="child")
                code = 0 if count(path) == 2 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        kernel.chat(model="sim/echo", messages="parent again")
        assert count(path) == 3


CALLER = textwrap.dedent(
    """
    import asyncio, sys
    from llmkernel import Kernel

    path, mode, callers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    kernel = Kernel.from_config({
        "providers": {"sim": {"type": "mock"}},
        "plugin": {"ledger": {"path": path, "durability": mode}},
    })

    async def caller(n):
        for i in range(1_000_000):
            tag = f"{n}-{i}"
            await kernel.achat(model="sim/echo", messages="hi", metadata={"tag": tag})
            sys.stdout.write(tag + "\\n")
            sys.stdout.flush()

    async def main():
        await asyncio.gather(*(caller(n) for n in range(callers)))

    if callers == 0:  # one thread of sync calls
        i = 0
        while True:
            kernel.chat(model="sim/echo", messages="hi", metadata={"tag": f"s-{i}"})
            sys.stdout.write(f"s-{i}\\n")
            sys.stdout.flush()
            i += 1
    asyncio.run(main())
    """
)


def killed_after(path: Path, mode: str, callers: int, lines: int) -> tuple[list[str], set[str]]:
    """Run the caller, SIGKILL it after ``lines`` answers; every answer it printed,
    and the tags in the ledger."""
    child = subprocess.Popen(
        [sys.executable, "-c", CALLER, str(path), mode, str(callers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while len(seen) < lines and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            seen.append(line.strip())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    seen.extend(line.strip() for line in child.stdout.read().splitlines() if line.strip())
    child.stdout.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    tags = {r[0] for r in conn.execute("SELECT json_extract(metadata, '$.tag') FROM requests")}
    conn.close()
    return seen, tags


@pytest.mark.parametrize("callers", [0, 20], ids=["sync-loop", "20-async-callers"])
def test_after_sigkill_every_answer_returned_has_its_row(tmp_path: Path, callers: int) -> None:
    lines = random.randint(200, 1500)
    seen, tags = killed_after(tmp_path / "l.db", "durable", callers, lines)
    assert len(seen) >= lines, "the caller never got going"
    missing = [tag for tag in seen if tag not in tags]
    assert not missing, f"{len(missing)} of {len(seen)} answers have no row: {missing[:5]}"


def test_an_idle_writer_commits_the_row_before_offer_returns(tmp_path: Path) -> None:
    """Durable and idle: the row is in the file when ``offer`` returns, with nothing
    left to await."""
    from llmkernel_ledger.store import LedgerRow, LedgerStore
    from llmkernel_ledger.writer import LedgerWriter

    store = LedgerStore(tmp_path / "l.db")
    writer = LedgerWriter(store, linger=0)

    async def offer() -> object:
        return writer.offer(LedgerRow(request_id="r1", ts=1.0), wait=True)

    assert asyncio.run(offer()) is None
    assert count(tmp_path / "l.db") == 1  # another connection sees it committed
    assert writer.written == 1
    writer.close()


def test_a_file_locked_by_another_process_is_not_waited_for_inline(tmp_path: Path) -> None:
    """Another connection holds the write lock (as another process would): the offer
    returns at once with an awaitable, which completes, row committed, once the lock
    is released; the caller's loop never waited on SQLite's busy timeout."""
    from llmkernel_ledger.store import LedgerRow, LedgerStore
    from llmkernel_ledger.writer import Durable, LedgerWriter

    path = tmp_path / "l.db"
    store = LedgerStore(path, busy_timeout=5.0)
    writer = LedgerWriter(store, linger=0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def offer() -> float:
        started = time.monotonic()
        wait = writer.offer(LedgerRow(request_id="r1", ts=1.0), wait=True)
        offered = time.monotonic() - started
        assert isinstance(wait, Durable)
        await asyncio.sleep(0.2)
        assert count(path) == 0  # nothing committed while the lock is held
        other.execute("COMMIT")
        await wait
        return offered

    offered = asyncio.run(offer())
    assert offered < 1.0, f"the offer waited {offered:.2f} s for the lock"
    assert count(path) == 1
    other.close()
    writer.close()
