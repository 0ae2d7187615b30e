"""llmkernel hooks of the ledger: record every call once, flush on close, ``costs``.

Every call ends in exactly one ``on_request_end``; its row is committed in a
``BEGIN IMMEDIATE`` transaction shared with the other calls of the moment (group
commit) by a writer thread. By default (``durability = "durable"``) the row is
committed before the caller gets the answer, so every answer a caller has is in the
file, even if the process is killed the next instant: when the writer is idle the
hook commits it at once (one try that waits for no lock), else it returns an
awaitable of the thread's commit, which the kernel awaits. ``Kernel.aclose`` flushes what is queued,
and so does the kernel's exit hook for a kernel that was never closed.
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
    from llmkernel_ledger.writer import Durable, Failed, LedgerWriter

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

            self._store = LedgerStore(
                self.settings.path,
                timezone=self.settings.timezone,
                lazy=True,
                busy_timeout=self.settings.busy_timeout,
            )
        return self._store

    @property
    def writer(self) -> LedgerWriter:
        if self._writer is None:
            from llmkernel_ledger.writer import LedgerWriter

            settings = self.settings
            self._writer = LedgerWriter(
                self.store,
                batch=settings.batch,
                linger=settings.linger_seconds,
                buffer=settings.buffer,
                write_timeout=settings.write_timeout,
            )
        return self._writer

    def record(self, ctx: Any, outcome: Any) -> Durable | Failed | None:
        """Record the call; when durable and on an event loop, the awaitable of its
        commit, or ``None`` when it is committed already (an idle writer commits it
        here). Its cost is worked out here (an early ending with tokens but no cost
        is billed at the candidate's price); otherwise the row is built on the
        thread."""
        from llmkernel_ledger.record import Finished, billed_cost

        item = Finished(ctx, outcome, billed_cost(ctx, outcome))
        wait = self.settings.durable and _on_a_loop()
        return self.writer.offer(item, wait=wait)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def after_fork(self) -> None:
        if self._store is not None:
            self._store.after_fork()
        if self._writer is not None:
            self._writer.after_fork()


def _on_a_loop() -> bool:
    import sys

    asyncio = sys.modules.get("asyncio")  # no loop can run without it imported
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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
    for register, hook in (
        ("add_closer", ledger.close),
        # a kernel never closed: commit what is queued at interpreter exit (the
        # writer thread still runs then)
        ("on_exit", ledger.close),
        ("on_fork", ledger.after_fork),
    ):
        getattr(kernel.lifecycle, register)(hook)


@hookimpl
def on_request_end(kernel: Kernel, ctx: Any, outcome: Any) -> Durable | Failed | None:
    """Queue the call (its row is built on the writer thread); return what the
    kernel awaits for its commit (durable mode). Never raises into the caller's
    request: a failure to queue is logged, a failure to commit is the awaitable's."""
    ledger = _ledgers.get(kernel)
    if ledger is None:
        return None
    try:
        return ledger.record(ctx, outcome)
    except Exception as exc:
        log.error("llmkernel.ledger.record_failed", error=f"{type(exc).__name__}: {exc}")
        if not (ledger.settings.durable and _on_a_loop()):
            return None
        from llmkernel_ledger.errors import LedgerError
        from llmkernel_ledger.writer import Failed

        return Failed(
            LedgerError(
                f"the call could not be recorded in {ledger.settings.path}: "
                f"{type(exc).__name__}: {exc}",
                path=ledger.settings.path,
            )
        )


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
