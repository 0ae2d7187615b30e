"""llmkernel hooks of the ledger: record every call once, flush on close, ``costs``.

Every call ends in exactly one ``on_request_end``; its row is handed to a writer
thread (never blocking the event loop) and committed in a ``BEGIN IMMEDIATE``
transaction. ``Kernel.aclose`` flushes what is still queued.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl, log

if TYPE_CHECKING:
    import argparse

    from llmkernel.cli_registry import CommandRegistry
    from llmkernel.config import Config
    from llmkernel.kernel import Kernel
    from llmkernel_ledger.settings import LedgerSettings
    from llmkernel_ledger.store import LedgerStore
    from llmkernel_ledger.writer import LedgerWriter

__all__ = ["Ledger", "configure", "ledger_for", "on_request_end", "register_commands"]


class Ledger:
    """A kernel's ledger: its settings, store and writer. The database is opened
    (and sqlite imported) on first use, so building a kernel stays cheap."""

    def __init__(self, settings: LedgerSettings) -> None:
        self.settings = settings
        self._store: LedgerStore | None = None
        self._writer: LedgerWriter | None = None

    @property
    def store(self) -> LedgerStore:
        if self._store is None:
            from llmkernel_ledger.store import LedgerStore

            self._store = LedgerStore(self.settings.path, timezone=self.settings.timezone)
        return self._store

    @property
    def writer(self) -> LedgerWriter:
        if self._writer is None:
            from llmkernel_ledger.writer import LedgerWriter

            self._writer = LedgerWriter(
                self.store, batch=self.settings.batch, linger=self.settings.linger
            )
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


_ledgers: weakref.WeakKeyDictionary[Kernel, Ledger] = weakref.WeakKeyDictionary()


def ledger_for(kernel: Kernel) -> Ledger:
    """The kernel's ledger (``ConfigError`` from ``configure`` when its settings are
    bad); budgets use it to share the database."""
    ledger = _ledgers.get(kernel)
    if ledger is None:
        from llmkernel.errors import ConfigError

        raise ConfigError("the ledger plugin is not enabled in this kernel")
    return ledger


@hookimpl
def configure(kernel: Kernel, config: Config) -> None:
    from llmkernel.options import parse_options
    from llmkernel_ledger.settings import LedgerSettings

    settings = parse_options(
        LedgerSettings, config.plugin_settings("ledger"), where=config.where("plugin.ledger")
    )
    ledger = Ledger(settings)
    _ledgers[kernel] = ledger
    add_closer = kernel.lifecycle.add_closer
    if add_closer is not None:
        add_closer(ledger.close)


@hookimpl
def on_request_end(kernel: Kernel, ctx: Any, outcome: Any) -> None:
    """Queue the call (its row is built on the writer thread); never raises into
    the caller's request."""
    ledger = _ledgers.get(kernel)
    if ledger is None:
        return
    try:
        ledger.writer.offer_call(ctx, outcome)
    except Exception as exc:
        log.error("llmkernel.ledger.record_failed", error=f"{type(exc).__name__}: {exc}")


@hookimpl
def register_commands(registry: CommandRegistry) -> None:
    from llmkernel_ledger.cli import add_arguments, run

    registry.add(
        "costs",
        help="what calls cost: today, this month, or grouped (from the ledger)",
        arguments=add_arguments,
        run=_run,
    )
    del run


def _run(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_ledger.cli import run

    return run(args, ledger_for(kernel))
