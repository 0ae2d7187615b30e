"""The kernel's logger: structlog when the application configured it, else quiet.

A library must not configure logging. Unconfigured structlog prints every level to
stdout, so until the application (our CLI, the gateway, or the user) configures
structlog, events go to the standard library logger ``llmkernel``, which has a
``NullHandler`` as libraries do: nothing is printed unless the application configures
logging. Event names are dotted: ``llmkernel.retry.scheduled``.

stamina (the kernel's retries) logs each retry it schedules through structlog by
default, which would print to stdout from an unconfigured structlog: see
:func:`quiet_stamina`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

_stdlib = logging.getLogger("llmkernel")
_stdlib.addHandler(logging.NullHandler())
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


def quiet_stamina() -> None:
    """Keep stamina's retry hook from printing through an unconfigured structlog.

    Called once, at the kernel's first retry. When stamina's hooks are still its
    defaults, its structlog hook is replaced by one that logs the same
    ``stamina.retry_scheduled`` event through structlog once the application has
    configured it, and through the quiet standard logger until then; stamina's other
    default hooks (Prometheus) are kept. Hooks an application set itself are left
    alone."""
    from stamina import instrumentation

    hooks = instrumentation.get_on_retry_hooks()
    defaults = [getattr(h, "__qualname__", "") for h in hooks]
    if not any(name.startswith("init_structlog") for name in defaults):
        return  # the application chose its own hooks
    kept = [
        hook
        for hook, name in zip(hooks, defaults, strict=True)
        if not name.startswith("init_structlog")
    ]

    def retry_scheduled(details: Any) -> None:
        _emit(
            "warning",
            "stamina.retry_scheduled",
            {
                "callable": details.name,
                "retry_num": details.retry_num,
                "caused_by": repr(details.caused_by),
                "wait_for": round(details.wait_for, 2),
                "waited_so_far": round(details.waited_so_far, 2),
            },
        )

    instrumentation.set_on_retry_hooks([*kept, retry_scheduled])


def get_logger() -> Log:
    """The quiet-by-default logger, for plugins too: ``from llmkernel import log``."""
    return log
