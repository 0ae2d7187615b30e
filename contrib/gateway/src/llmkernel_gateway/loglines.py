"""The access log's output: lines through a buffer, not a flush per request."""

from __future__ import annotations

import contextlib
import sys


def flush() -> None:
    """Flush the access log now (at shutdown: the last lines must not wait)."""
    if BufferedLines._shared is not None:
        BufferedLines._shared.flush()


class BufferedLines:
    """A structlog logger writing lines to stderr through a buffer, flushed by a
    daemon thread every ``interval`` seconds and at exit: one write per request
    (the access log) without a flush syscall per request. ``BufferedWriter`` locks
    its buffer, so the flushing thread and the serving loop may both touch it."""

    _shared: BufferedLines | None = None

    @classmethod
    def shared(cls) -> BufferedLines:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def __init__(self, interval: float = 0.2) -> None:
        import atexit
        import io
        import os
        import threading

        self._out = io.BufferedWriter(io.FileIO(os.dup(sys.stderr.fileno()), "wb"), 1 << 16)
        self._interval = interval
        atexit.register(self.flush)
        threading.Thread(target=self._flush_often, name="gateway-log", daemon=True).start()

    def _flush_often(self) -> None:
        import time

        while True:
            time.sleep(self._interval)
            self.flush()

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._out.flush()

    def msg(self, message: str) -> None:
        self._out.write(message.encode("utf-8", "replace") + b"\n")

    debug = info = warning = warn = error = err = critical = exception = fatal = msg


__all__ = ["BufferedLines", "flush"]
