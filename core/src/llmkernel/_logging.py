"""The kernel's logger: structlog when the application configured it, else quiet.

A library must not configure logging. Unconfigured structlog prints every level to
stdout, so until the application (our CLI, the gateway, or the user) configures
structlog, events go to the standard library logger ``llmkernel``, which shows only
warnings and errors by default. Event names are dotted: ``llmkernel.retry.scheduled``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

_stdlib = logging.getLogger("llmkernel")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


_bound: tuple[tuple[Any, ...], Any] | None = None


def _structlog_logger(structlog: Any) -> Any:
    """The application's structlog logger for ``llmkernel``, built once per
    structlog configuration (``get_logger`` on every event costs microseconds; a
    filtering bound logger's disabled levels are then no-ops)."""
    global _bound
    internal = getattr(getattr(structlog, "_config", None), "_CONFIG", None)
    if internal is not None and hasattr(internal, "default_processors"):
        key: tuple[Any, ...] = (
            id(internal.default_processors),
            internal.default_wrapper_class,
            id(internal.logger_factory),
        )
    else:  # structlog changed its internals: the public (slower) way
        config = structlog.get_config()
        key = (id(config["processors"]), config["wrapper_class"], id(config["logger_factory"]))
    if _bound is None or _bound[0] != key:
        _bound = (key, structlog.get_logger("llmkernel").bind())
    return _bound[1]


def _emit(level: str, event: str, fields: dict[str, Any]) -> None:
    # An application that configured structlog has imported it; checking sys.modules
    # keeps structlog's import (tens of ms) off the library's startup.
    structlog = sys.modules.get("structlog")
    if structlog is not None and structlog.is_configured():
        getattr(_structlog_logger(structlog), level)(event, **fields)
        return
    number = _LEVELS[level]
    if _stdlib.isEnabledFor(number):
        detail = " ".join(f"{k}={v!r}" for k, v in fields.items())
        _stdlib.log(number, "%s %s", event, detail)


class Log:
    """``log.debug("llmkernel.request.sent", provider="openai")`` and so on."""

    def debug(self, event: str, **fields: Any) -> None:
        _emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        _emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        _emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        _emit("error", event, fields)


log = Log()


def get_logger() -> Log:
    """The quiet-by-default logger, for plugins too: ``from llmkernel import log``."""
    return log
