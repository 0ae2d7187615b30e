"""The ``[plugin.ledger]`` table."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

__all__ = ["LedgerSettings", "default_path"]


def default_path() -> str:
    """``$XDG_DATA_HOME/llmkernel/ledger.db`` (``~/.local/share/...`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "llmkernel" / "ledger.db")


@attrs.frozen(kw_only=True)
class LedgerSettings:
    """``path`` of the SQLite file; ``timezone`` (IANA name) of the calendar days and
    months in summaries; ``batch`` rows at most per transaction; ``linger`` seconds
    the writer waits, once woken, for more rows to commit with (group commit)."""

    path: str = attrs.field(factory=default_path)
    timezone: str = attrs.field(default="UTC")
    batch: int = attrs.field(default=500)
    linger: float = attrs.field(default=0.005)

    @timezone.validator
    def _known_zone(self, attribute: attrs.Attribute[str], value: str) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {value!r} is not a known IANA time zone") from None

    @linger.validator
    def _linger(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not 0 <= value <= 1:
            raise ValueError(f"linger must be between 0 and 1 second, not {value}")

    @batch.validator
    def _positive(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ValueError(f"batch must be at least 1, not {value}")
