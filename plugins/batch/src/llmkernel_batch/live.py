"""A live run from the command line: the output file is the record of what is done.

Each result is appended as one JSON line and flushed as soon as it is known, so a
run killed at any moment loses at most the calls that were in flight. Running the
same command again reads the output first: a partial last line (the process died
mid-write) is cut off, finished ``custom_id``s are skipped, and with
``--retry-failed`` the failed ones are taken out of the file and run again. Every
``custom_id`` ends up in the file exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from llmkernel_batch.items import BadLine, BatchItem
from llmkernel_batch.progress import Tally
from llmkernel_batch.results import BatchResult
from llmkernel_batch.runner import RunBudget, abatch, new_run_id, worst_case

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

__all__ = ["OutputFile", "dry_run", "run_live"]


class OutputFile:
    """The JSONL results of a run, appended line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None

    def repair(self) -> None:
        """Cut a partial last line left by a process killed mid-write."""
        if not self.path.exists():
            return
        with self.path.open("rb+") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            chunk = min(size, 1 << 20)
            while True:
                handle.seek(size - chunk)
                data = handle.read(chunk)
                cut = data.rfind(b"\n")
                if cut >= 0:
                    handle.truncate(size - chunk + cut + 1)
                    return
                if chunk == size:
                    handle.truncate(0)
                    return
                chunk = min(size, chunk * 2)

    def finished(self) -> dict[str, str]:
        """``custom_id`` -> ``"ok"`` or ``"error"`` for every line in the file."""
        done: dict[str, str] = {}
        if not self.path.exists():
            return done
        with self.path.open(encoding="utf-8") as handle:
            for raw in handle:
                try:
                    data = json.loads(raw)
                    done[str(data["custom_id"])] = str(data.get("status", "error"))
                except (ValueError, KeyError, TypeError):
                    continue
        return done

    def drop_failed(self) -> int:
        """Rewrite the file without its ``"error"`` lines (atomically); how many."""
        if not self.path.exists():
            return 0
        kept: list[str] = []
        dropped = 0
        with self.path.open(encoding="utf-8") as handle:
            for raw in handle:
                try:
                    failed = json.loads(raw).get("status") != "ok"
                except ValueError:
                    failed = True
                if failed:
                    dropped += 1
                else:
                    kept.append(raw)
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("w", encoding="utf-8") as out:
                out.writelines(kept)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        return dropped

    def write(self, result: BatchResult) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(result.to_line())
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None


class _Ordered:
    """Holds results back until every earlier request has one (``--ordered``)."""

    def __init__(self, ids: Sequence[str], write: Any) -> None:
        self.ids = list(ids)
        self.next = 0
        self.held: dict[str, BatchResult | None] = {}
        self.write = write

    def add(self, custom_id: str, result: BatchResult | None) -> None:
        self.held[custom_id] = result
        while self.next < len(self.ids) and self.ids[self.next] in self.held:
            held = self.held.pop(self.ids[self.next])
            if held is not None:
                self.write(held)
            self.next += 1

    def flush(self) -> None:
        for custom_id in self.ids[self.next :]:
            held = self.held.pop(custom_id, None)
            if held is not None:
                self.write(held)
        self.next = len(self.ids)


def run_live(
    kernel: Kernel,
    entries: Iterable[BatchItem | BadLine],
    *,
    output: Path | None,
    concurrency: int,
    budget: Decimal | None = None,
    ordered: bool = False,
    retry_failed: bool = False,
    timeout: float | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the batch; 0 when every request is answered ok, 1 otherwise."""
    err = stderr or sys.stderr
    items: list[BatchItem] = []
    bad = 0
    for entry in entries:
        if isinstance(entry, BadLine):
            bad += 1
            err.write(f"llmkernel batch: skipped {entry}\n")
        else:
            items.append(entry)
    out = OutputFile(output) if output is not None else None
    done: dict[str, str] = {}
    if out is not None:
        out.repair()
        if retry_failed:
            out.drop_failed()
        done = out.finished()
    todo = [item for item in items if item.custom_id not in done]
    tally = Tally(total=len(items), already=len(items) - len(todo), stream=err)
    limit = RunBudget(limit=budget) if budget is not None else None
    write = out.write if out is not None else _printer(stdout or sys.stdout)
    order = _Ordered([i.custom_id for i in todo], write) if ordered else None
    stopped: str | None = None
    try:
        asyncio.run(_drive(kernel, todo, concurrency, limit, timeout, tally, write, order))
    except KeyboardInterrupt:
        stopped = "interrupted: calls in flight were cancelled; run again to go on"
        raise
    finally:
        if order is not None:
            order.flush()
        if out is not None:
            out.close()
        tally.finish()
        if limit is not None and limit.stopped and stopped is None:
            stopped = (
                f"stopped at the budget: ${limit.spent} spent of ${limit.limit} "
                "(no further request fit); run again with a larger --budget to go on"
            )
        err.write(tally.summary(stopped=stopped) + "\n")
        if bad:
            err.write(f"llmkernel batch: {bad} bad line(s) skipped\n")
    ok_before = sum(1 for item in items if done.get(item.custom_id) == "ok")
    return 0 if not bad and ok_before + tally.ok == len(items) else 1


async def _drive(
    kernel: Kernel,
    todo: list[BatchItem],
    concurrency: int,
    limit: RunBudget | None,
    timeout: float | None,
    tally: Tally,
    write: Any,
    order: _Ordered | None,
) -> None:
    try:
        results = abatch(
            kernel,
            todo,
            concurrency=concurrency,
            budget=limit,
            run_id=new_run_id(),
            timeout=timeout,
        )
        async for result in results:
            tally.add(result)
            if order is not None:
                order.add(result.custom_id, result if result.status != "skipped" else None)
            elif result.status != "skipped":
                write(result)
    finally:
        await kernel.aclose()


def _printer(stream: TextIO) -> Any:
    def write(result: BatchResult) -> None:
        stream.write(result.to_line())
        stream.flush()

    return write


def dry_run(
    kernel: Kernel, entries: Iterable[BatchItem | BadLine], *, stdout: TextIO, stderr: TextIO
) -> int:
    """Check every line and print the worst-case cost; 1 when a line is bad."""
    from llmkernel.errors import LLMKernelError

    count = bad = unpriced = 0
    total = Decimal(0)
    models: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, BadLine):
            bad += 1
            stderr.write(f"llmkernel batch: {entry}\n")
            continue
        count += 1
        model = entry.model or kernel.models.default_model
        models[model] = models.get(model, 0) + 1
        try:
            worst = worst_case(kernel, entry)
        except LLMKernelError as exc:
            bad += 1
            stderr.write(f"llmkernel batch: line {entry.line}: {exc}\n")
            continue
        if worst is None:
            unpriced += 1
        else:
            total += worst
    by_model = ", ".join(f"{m} x{n}" for m, n in sorted(models.items()))
    stdout.write(f"{count} request(s), {bad} bad line(s); models: {by_model or '-'}\n")
    note = f" ({unpriced} unpriced, not counted)" if unpriced else ""
    stdout.write(f"worst-case cost: ${total}{note}\n")
    return 1 if bad else 0
