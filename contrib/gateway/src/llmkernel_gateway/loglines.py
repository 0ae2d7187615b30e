"""The gateway's log output: JSON lines on stderr, through a buffer.

:func:`configure` sets structlog up for a serving process: ``llmkernel serve`` calls
it, and each worker of ``--workers N`` calls it again when it builds its app (a
worker is a fresh interpreter: without it, its access log and the retry warnings
went nowhere, or to stdout).

Lines are buffered and written every 0.2 s by a daemon thread, and at shutdown: one
write for many requests instead of a flush per request. Each write holds whole lines
and at most ``PIPE_BUF`` bytes, so the lines of several workers sharing one stderr
pipe never interleave within a line.
"""

from __future__ import annotations

import os
import select
import sys
import threading

_CHUNK = getattr(select, "PIPE_BUF", 4096)  # writes of this size to a pipe are atomic


def configure(access_log: bool) -> None:
    """structlog for a serving process: JSON lines on stderr (through
    :class:`BufferedLines`), ``info`` and up with the access log on, else
    ``warning`` and up. stamina's own retry hook is off: the kernel logs each retry
    itself (``llmkernel.retry.scheduled``)."""
    import logging

    import structlog
    from stamina import instrumentation

    lines = BufferedLines.shared()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if access_log else logging.WARNING
        ),
        logger_factory=lambda *args: lines,
        cache_logger_on_first_use=True,
    )
    instrumentation.set_on_retry_hooks([])


def flush() -> None:
    """Write what is buffered now (at shutdown: the last lines must not wait)."""
    if BufferedLines._shared is not None:
        BufferedLines._shared.flush()


class BufferedLines:
    """A structlog logger writing lines to stderr through a buffer (see the module)."""

    _shared: BufferedLines | None = None

    @classmethod
    def shared(cls) -> BufferedLines:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def __init__(self, interval: float = 0.2) -> None:
        self._fd = os.dup(sys.stderr.fileno())
        self._buffer = bytearray()
        self._lock = threading.Lock()  # the buffer
        self._writing = threading.Lock()  # one flush at a time: lines in order
        self._interval = interval
        threading.Thread(target=self._flush_often, name="gateway-log", daemon=True).start()

    def _flush_often(self) -> None:
        import time

        while True:
            time.sleep(self._interval)
            self.flush()

    def flush(self) -> None:
        with self._writing:
            with self._lock:
                data, self._buffer = bytes(self._buffer), bytearray()
            start, size = 0, len(data)
            while start < size:
                end = min(size, start + _CHUNK)
                if end < size:  # whole lines only (a line longer than a chunk goes alone)
                    cut = data.rfind(b"\n", start, end)
                    end = cut + 1 if cut >= 0 else (data.find(b"\n", end) + 1 or size)
                try:
                    start += os.write(self._fd, data[start:end])
                except OSError:
                    return  # stderr is gone: nothing more to do

    def msg(self, message: str) -> None:
        line = message.encode("utf-8", "replace") + b"\n"
        with self._lock:
            self._buffer += line

    debug = info = warning = warn = error = err = critical = exception = fatal = msg


__all__ = ["BufferedLines", "configure", "flush"]
