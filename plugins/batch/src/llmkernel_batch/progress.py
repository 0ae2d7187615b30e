"""A small progress bar on stderr (only when it is a terminal) and the final
summary line. Hand-written: one line redrawn at most ten times a second, so a run
needs no extra dependency."""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from typing import TextIO

import attrs

from llmkernel_batch.results import BatchResult

__all__ = ["Tally"]


@attrs.define(kw_only=True)
class Tally:
    """What a run has done so far; ``draw`` redraws the bar, ``summary`` is the
    last line."""

    total: int
    already: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    tokens: int = 0
    spend: Decimal = Decimal(0)
    unpriced: int = 0
    started: float = attrs.field(factory=time.monotonic)
    stream: TextIO | None = None
    _drawn: float = 0.0
    _width: int = 0

    @property
    def done(self) -> int:
        return self.ok + self.failed

    def add(self, result: BatchResult) -> None:
        if result.status == "ok":
            self.ok += 1
            self.tokens += result.tokens
            if result.cost is None:
                self.unpriced += 1
            else:
                self.spend += result.cost
        elif result.status == "error":
            self.failed += 1
        else:
            self.skipped += 1
        self.draw()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def draw(self, *, force: bool = False) -> None:
        stream = self.stream
        if stream is None or not _is_terminal(stream):
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        todo = max(self.total - self.already, 0)
        share = self.done / todo if todo else 1.0
        filled = int(share * 24)
        rate = self.rate()
        left = todo - self.done - self.skipped
        eta = f"{left / rate:.0f}s" if rate > 0 and left > 0 else "-"
        line = (
            f"[{'#' * filled}{'.' * (24 - filled)}] {self.done}/{todo} "
            f"ok {self.ok} failed {self.failed} | {rate:.1f}/s | {self.tokens} tok | "
            f"${self.spend:.4f} | ETA {eta}"
        )
        pad = max(self._width - len(line), 0)
        self._width = len(line)
        stream.write("\r" + line + " " * pad)
        stream.flush()

    def finish(self) -> None:
        stream = self.stream
        if stream is not None and _is_terminal(stream) and self._width:
            stream.write("\r" + " " * self._width + "\r")
            stream.flush()

    def summary(self, *, stopped: str | None = None) -> str:
        elapsed = time.monotonic() - self.started
        not_started = max(self.total - self.already - self.done - self.skipped, 0)
        spend = f"${self.spend:.6f}" + (f" (+{self.unpriced} unpriced)" if self.unpriced else "")
        parts = [
            f"batch: {self.done} done ({self.ok} ok, {self.failed} failed)",
            f"{self.already} already done",
            f"{self.skipped + not_started} not run",
            f"{self.tokens} tokens",
            spend,
            f"{elapsed:.1f}s",
        ]
        line = ", ".join(parts)
        return f"{line}; {stopped}" if stopped else line


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def stderr() -> TextIO:
    return sys.stderr
