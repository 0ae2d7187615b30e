"""llmkernel hooks of the budgets plugin: configure, the gate, the alert hookspec.

Budgets live in the ledger's database and count spend from its rows, so the ledger
plugin must be enabled too (a ``ConfigError`` says so otherwise).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl
from llmkernel_budgets import hookspecs as llmkernel_hookspecs

if TYPE_CHECKING:
    from llmkernel.config import Config
    from llmkernel.kernel import Kernel
    from llmkernel_budgets.fleet import FleetBudgets
    from llmkernel_budgets.gate import BudgetGate
    from llmkernel_budgets.store import BudgetStore

__all__ = [
    "budgets_for",
    "collect_stats",
    "configure",
    "fleet_for",
    "llmkernel_hookspecs",
    "provide_gate",
]

_stores: weakref.WeakKeyDictionary[Kernel, BudgetStore] = weakref.WeakKeyDictionary()
_fleets: weakref.WeakKeyDictionary[Kernel, FleetBudgets] = weakref.WeakKeyDictionary()


def budgets_for(kernel: Kernel) -> BudgetStore | None:
    """The kernel's budget store, ``None`` when no limit is configured."""
    return _stores.get(kernel)


def fleet_for(kernel: Kernel) -> FleetBudgets | None:
    """The kernel's budgets shared over Redis (``[redis]`` set, ``[plugin.budgets]
    shared`` not false), else ``None``."""
    return _fleets.get(kernel)


@hookimpl(trylast=True)  # after the ledger's configure
def configure(kernel: Kernel, config: Config) -> None:
    _stores.pop(kernel, None)  # a reconfigure: the old config's store closes with it
    _fleets.pop(kernel, None)
    raw = config.plugin_settings("budgets")
    if not raw:  # no table, no limits: nothing to load
        return
    from llmkernel.errors import ConfigError
    from llmkernel.options import parse_options
    from llmkernel_budgets.settings import BudgetSettings

    where = config.where("plugin.budgets")
    settings = parse_options(BudgetSettings, raw, where=where)
    try:
        limits = settings.build_limits()
    except ValueError as exc:
        raise ConfigError(f"{exc} in {where}") from None
    if not limits:
        return
    from llmkernel_budgets.alerts import AlertSink, Webhook
    from llmkernel_budgets.store import BudgetStore
    from llmkernel_ledger.plugin import ledger_for

    try:
        ledger = ledger_for(kernel)
    except ConfigError:
        raise ConfigError(
            f"budgets in {where} need the ledger plugin (llmkernel-ledger) enabled"
        ) from None
    webhook = None
    if settings.webhook:
        webhook = Webhook(
            settings.webhook,
            timeout=settings.webhook_timeout,
            attempts=settings.webhook_attempts,
        )
    from llmkernel_ledger.errors import sqlite_errors

    with sqlite_errors(ledger.settings.path, "open the budgets"):
        store = _stores[kernel] = BudgetStore(
            ledger.store,
            limits,
            timezone=settings.timezone,
            reservation_ttl=settings.reservation_ttl,
            thresholds=settings.thresholds(),
            allow_unpriced=settings.allow_unpriced,
            on_alert=AlertSink(kernel, webhook),
            slab=settings.slab,
            slab_ttl=settings.slab_ttl,
        )
    hook = webhook

    def give_back() -> None:
        # the ledger's queued rows settle pending costs and may cross thresholds:
        # flush it first (whatever order the kernel runs these in), then give this
        # process's unused slabs back
        ledger.writer.flush()
        store.return_slabs()

    def close() -> None:
        give_back()
        ledger.close()
        if hook is not None:
            hook.close()

    for register, fn in (
        ("add_closer", close),
        # a kernel never closed: its slabs go back at exit rather than expiring
        ("on_exit", give_back),
        ("on_fork", store.after_fork),
    ):
        getattr(kernel.lifecycle, register)(fn)
    if config.redis and settings.shared:
        _share(kernel, store, where)


def _share(kernel: Kernel, store: BudgetStore, where: str) -> None:
    """The fleet's budgets in Redis, the SQLite store their fallback at amount/N."""
    from llmkernel.errors import ConfigError

    try:
        from llmkernel_redis.shared import shared_for
    except ImportError:
        raise ConfigError(
            f"[redis] is set and budgets in {where} are shared: install "
            "llmkernel-budgets[redis] (llmkernel-redis), or set shared = false"
        ) from None
    shared = shared_for(kernel, "budgets")
    if shared is None:
        return
    from llmkernel_budgets.fleet import FleetBudgets
    from llmkernel_ledger.errors import sqlite_errors

    with sqlite_errors(store.ledger.path, "open the budgets"):
        fleet = _fleets[kernel] = FleetBudgets(store, shared)
    # after the link's closer was added: runs before it (closers run newest first)
    kernel.lifecycle.add_closer(fleet.aclose)
    kernel.lifecycle.on_fork(fleet.forget)


@hookimpl
def provide_gate(kernel: Kernel) -> BudgetGate | None:
    store = _stores.get(kernel)
    if store is None:
        return None
    from llmkernel_budgets.gate import BudgetGate
    from llmkernel_ledger.plugin import ledger_for

    return BudgetGate(store, ledger_for(kernel).writer, _fleets.get(kernel))


@hookimpl
def collect_stats(kernel: Kernel) -> dict[str, Any] | None:
    """``{"budgets": {"overruns": n, "overrun_excess": "0.12"}}``: calls of this
    process billed more than they reserved, and by how much in all."""
    store = _stores.get(kernel)
    if store is None:
        return None
    out: dict[str, Any] = {
        "overruns": store.overruns,
        "overrun_excess": format(store.overrun_excess, "f"),
    }
    fleet = _fleets.get(kernel)
    if fleet is not None:
        out.update(fleet.stats())
    return {"budgets": out}
