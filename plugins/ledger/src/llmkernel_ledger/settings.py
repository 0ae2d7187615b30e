"""The ``[plugin.ledger]`` table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import attrs

__all__ = ["LedgerSettings", "default_path", "known_timezone"]

#: seconds a woken writer waits for more rows in ``durability = "fast"``
FAST_LINGER = 0.005


def default_path() -> str:
    """``$XDG_DATA_HOME/llmkernel/ledger.db`` (``~/.local/share/...`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "llmkernel" / "ledger.db")


def known_timezone(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    """attrs validator: ``value`` is an IANA time zone (budgets use it too)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {value!r} is not a known IANA time zone") from None


@attrs.frozen(kw_only=True)
class LedgerSettings:
    """``path`` of the SQLite file; ``timezone`` (IANA name) of the calendar days and
    months in summaries; ``durability``: ``"durable"`` (a call returns only once its
    row is committed) or ``"fast"`` (rows are committed in the background);
    ``batch`` rows at most per transaction; ``linger`` seconds the writer waits,
    once woken, for more rows to commit with (default 0 when durable, 5 ms when
    fast); ``buffer`` rows at most kept in memory while the file cannot be written;
    ``write_timeout`` seconds a failing write is retried before the calls waiting
    for it fail; ``busy_timeout`` seconds a write waits for another process's lock
    before that counts as a failed write."""

    path: str = attrs.field(factory=default_path)
    timezone: str = attrs.field(default="UTC", validator=known_timezone)
    durability: Literal["durable", "fast"] = "durable"
    batch: int = attrs.field(default=500)
    linger: float | None = attrs.field(default=None)
    buffer: int = attrs.field(default=100_000)
    write_timeout: float = attrs.field(default=5.0)
    busy_timeout: float = attrs.field(default=30.0)

    @property
    def durable(self) -> bool:
        return self.durability == "durable"

    @property
    def linger_seconds(self) -> float:
        if self.linger is not None:
            return self.linger
        return 0.0 if self.durable else FAST_LINGER

    @linger.validator
    def _linger(self, attribute: attrs.Attribute[float | None], value: float | None) -> None:
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"linger must be between 0 and 1 second, not {value}")

    @batch.validator
    def _positive(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ValueError(f"batch must be at least 1, not {value}")

    @buffer.validator
    def _buffer(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ValueError(f"buffer must be at least 1 row, not {value}")

    @busy_timeout.validator
    def _busy_timeout(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not 0 <= value <= 600:
            raise ValueError(f"busy_timeout must be between 0 and 600 seconds, not {value}")

    @write_timeout.validator
    def _write_timeout(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not 0 <= value <= 600:
            raise ValueError(f"write_timeout must be between 0 and 600 seconds, not {value}")
