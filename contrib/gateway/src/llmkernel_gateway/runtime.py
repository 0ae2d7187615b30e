"""What changes while the gateway runs, and how each worker takes it in.

Each worker (each process of ``llmkernel serve --workers N``, each instance of a
fleet) has one :class:`Runtime`. Every ``control_refresh`` seconds (1 s by default)
it reads the key store's stamp (one read); when it moved, it reads the store whole
and takes in what changed:

- **keys**: the key ring (the config file's keys and the store's) is replaced at
  once: a new key opens, a revoked or disabled one is refused, from the next
  request on;
- **budgets and rate limits of keys**: turned into the budgets plugin's limits and
  the ratelimit plugin's rules (:mod:`llmkernel_gateway.handoff`, the same as for a
  config key) of a config derived from the file's, which the kernel swaps in with
  :meth:`~llmkernel.kernel.Kernel.areconfigure` when they changed: the plugins that
  already guarantee no overspend under concurrency enforce them, the spend is the
  ledger's (nothing is forgotten by the swap), and the rate limiter's counts are in
  a file of the worker's run directory (or Redis), so they outlive the swap too;
- **deployments' live settings** (:mod:`llmkernel_gateway.deployments`): read by the
  gateway's filter and strategy at the next call, no swap needed;
- **a reload** (``POST /admin/reload`` bumped the store's generation): the config
  file is read again, checked whole (a config that does not validate changes
  nothing and is reported) and swapped in the same way.

``SIGHUP`` reloads the config file too: a single process handles it itself; with
``--workers N`` the supervisor bumps a counter file in the workers' run directory
(:func:`bump_reload`), which each worker reads with the store's stamp. Calls in
flight finish on the config they started with; the old one is closed when its last
call ends (at most ``shutdown_timeout`` seconds later), in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl, log
from llmkernel.config import Config
from llmkernel.errors import ConfigError
from llmkernel_gateway.deployments import GatewayRouting, Overrides, with_gateway_strategy
from llmkernel_gateway.handoff import SHARED_DIR_ENV, with_key_budgets, with_key_limits
from llmkernel_gateway.keys import KeyRing

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_gateway.app import Gateway
    from llmkernel_gateway.keystore import KeyStore, Snapshot
    from llmkernel_gateway.records import KeyRecord
    from llmkernel_gateway.settings import Key

__all__ = ["RELOAD_FILE", "Runtime", "bump_reload"]

#: the counter file a supervisor's SIGHUP bumps in the workers' run directory
RELOAD_FILE = "reload"
#: seconds between two writes of the keys' last use to the store
USAGE_EVERY = 5.0


class _Lifecycle:
    """Registers the access log's last flush on every config's lifecycle."""

    __llmkernel_name__ = "gateway-lifecycle"

    @hookimpl
    def configure(self, kernel: Kernel, config: Config) -> None:
        from llmkernel_gateway import loglines

        kernel.lifecycle.on_exit(loglines.flush)  # the last access lines, if never shut down


class Runtime:
    """Keys, deployments and config of one worker, kept up to date (see the module)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.overrides = Overrides()
        self.store: KeyStore | None = None
        self.records: Mapping[str, KeyRecord] = {}
        self.stamp: Hashable = None
        self.generation: int | None = None
        self.keyed = False  # the store has held a key (see Snapshot.keyed)
        self.used: dict[str, float] = {}
        self.reloads: list[dict[str, Any]] = []  # the last few, newest last
        self._hup = -1  # the run directory's reload counter last seen
        self._drains: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock: asyncio.Lock | None = None
        self._private_dir: str | None = None
        shared = os.environ.get(SHARED_DIR_ENV)
        self.run_dir = shared or None

    # ------------------------------------------------------------------ wiring

    def plugins(self, sessions: Any) -> list[object]:
        return [GatewayRouting(self.overrides, sessions), _Lifecycle()]

    def keys(self) -> list[Key]:
        return self.gateway.keys.keys()

    def derive(self, base: Config, keys: Iterable[Key]) -> Config:
        """The kernel's config: ``base`` (the file's) with every key's budget and
        rate limit, and the gateway's strategy around the configured one."""
        keys = list(keys)
        config = with_key_budgets(base, keys)
        config = with_key_limits(config, keys, self.run_dir)
        return with_gateway_strategy(config)

    async def open(self) -> None:
        """Open the key store and read it (before the kernel is built: its keys'
        limits are part of the kernel's config)."""
        from llmkernel_gateway.keystore import open_store

        if self.run_dir is None:  # one process: a private run directory of its own
            self._private_dir = self.run_dir = tempfile.mkdtemp(prefix="llmkernel-gateway-run-")
        gateway = self.gateway
        self.store = open_store(gateway.settings, gateway.config)
        self._hup = self._hup_counter()
        try:
            snapshot = await self.store.snapshot()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            if not self.store.where.startswith("Redis"):
                raise ConfigError(
                    f"cannot read the gateway's key store ({self.store.where}): {error}"
                ) from None
            # Redis is away: serve the config file's keys now, the store's once it is back
            log.warning("gateway.keystore.unavailable", store=self.store.where, error=error)
            # (beyond loopback the config file has keys: serve --host refuses to start
            # without; on loopback a gateway without keys is open by design)
            self.gateway.keys = KeyRing(self.gateway.settings.key_list(), ())
            return
        self._take(snapshot)
        self.generation = snapshot.generation

    def start(self) -> None:
        """Poll the store, write keys' last use, handle SIGHUP (after the kernel
        is built, on the serving loop)."""
        loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._tasks = [
            loop.create_task(self._poll()),
            loop.create_task(self._write_usage()),
        ]
        if hasattr(self.store, "publish_share"):  # a fleet: its dashboard sums the ledgers
            self._tasks.append(loop.create_task(self._publish_share()))
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, self._sighup)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if hasattr(signal, "SIGHUP"):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._drains:  # old configs still closing: their ledger rows must land
            await asyncio.gather(*self._drains, return_exceptions=True)
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.touch(self._take_used())
            await self.store.aclose()
        if self._private_dir is not None:
            import shutil

            shutil.rmtree(self._private_dir, ignore_errors=True)

    # ------------------------------------------------------------------ polling

    def _take(self, snapshot: Snapshot) -> None:
        """Take the store's keys and deployments in (no kernel change here)."""
        self.stamp = snapshot.stamp
        self.records = dict(snapshot.records)
        self.overrides.update(snapshot.deployments)
        gateway = self.gateway
        self.keyed = snapshot.keyed
        gateway.keys = KeyRing(
            gateway.settings.key_list(), self.records.values(), required=self.keyed
        )

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.gateway.settings.control_refresh)
            try:
                await self.refresh()
            except Exception as exc:  # the store is away: keep what we have, try again
                log.warning(
                    "gateway.keystore.read_failed", error=f"{type(exc).__name__}: {exc}"[:300]
                )

    async def refresh(self) -> None:
        """Take in what changed in the store (and a supervisor's SIGHUP)."""
        assert self.store is not None
        hup = self._hup_counter()
        if hup != self._hup:
            self._hup = hup
            await self.reload("SIGHUP", broadcast=False)
        stamp = await self.store.stamp()
        if stamp == self.stamp:
            return
        snapshot = await self.store.snapshot()
        self._take(snapshot)
        if self.generation is None:  # the first read (the store was away at start)
            self.generation = snapshot.generation
            await self.apply()
        elif snapshot.generation != self.generation:
            self.generation = snapshot.generation
            await self.reload("store", broadcast=False)
        else:
            await self.apply()

    def _hup_counter(self) -> int:
        if self.run_dir is None:
            return 0
        try:
            return int(Path(self.run_dir, RELOAD_FILE).read_text() or 0)
        except (OSError, ValueError):
            return 0

    # ------------------------------------------------------------------ applying

    async def apply(self, base: Config | None = None) -> bool:
        """Swap in the config derived from ``base`` (default: the current file's)
        and every key, when it differs from the kernel's; whether it did. A config
        that does not validate raises ``ConfigError`` and changes nothing."""
        gateway = self.gateway
        kernel = gateway.kernel
        if kernel is None:
            return False
        assert self._lock is not None
        async with self._lock:
            new_base = base or gateway.config
            config = self.derive(new_base, gateway.keys.keys())
            current = kernel.config
            if base is None and all(
                config.plugin_settings(name) == current.plugin_settings(name)
                for name in ("budgets", "ratelimit")
            ):
                return False  # the keys' limits are what the kernel has
            from llmkernel_gateway.handoff import require_plugins

            loaded = [p.name for p in kernel.plugins if p.status == "loaded"]
            require_plugins(gateway.keys.keys(), loaded)
            await self._swap(kernel, config)
            gateway.reconfigured(kernel)
            return True

    async def _swap(self, kernel: Kernel, config: Config) -> None:
        """``kernel.areconfigure(config)``: return once the new config is in (or
        raise why it is not); the old one drains and closes in the background."""
        drain = self.gateway.settings.shutdown_timeout
        task = asyncio.ensure_future(kernel.areconfigure(config, drain=drain))
        self._drains.add(task)
        task.add_done_callback(self._drained)
        while not task.done() and kernel.config is not config:
            await asyncio.sleep(0)
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    def _drained(self, task: asyncio.Task[None]) -> None:
        self._drains.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, ConfigError):  # a refused config is the caller's news
                log.error("gateway.reconfigure_failed", error=f"{type(exc).__name__}: {exc}")

    async def reload(self, why: str, *, broadcast: bool = True, actor: str = "") -> dict[str, Any]:
        """Read the config file again and swap it in; with ``broadcast``, tell every
        other worker and instance through the store. Returns what happened."""
        gateway = self.gateway
        started = time.perf_counter()
        entry: dict[str, Any] = {"at": time.time(), "why": why, "pid": os.getpid()}
        try:
            base = self._read_config()
            from llmkernel_gateway.settings import load_settings

            settings = load_settings(base)
            old_settings, old_config = gateway.settings, gateway.config
            gateway.settings, gateway.config = settings, base
            gateway.keys = KeyRing(settings.key_list(), self.records.values(), required=self.keyed)
            try:
                await self.apply(base)
            except BaseException:
                gateway.settings, gateway.config = old_settings, old_config
                gateway.keys = KeyRing(
                    old_settings.key_list(), self.records.values(), required=self.keyed
                )
                raise
            _warn_restart(old_settings, settings)
        except ConfigError as exc:
            entry.update(ok=False, error=str(exc))
            log.error("gateway.reload_failed", why=why, error=str(exc))
            self._remember(entry)
            raise
        if broadcast and self.store is not None:
            self.generation = await self.store.request_reload(actor=actor or why)
        entry.update(ok=True, seconds=round(time.perf_counter() - started, 3))
        log.info(
            "gateway.reloaded", why=why, source=gateway.config.source, seconds=entry["seconds"]
        )
        self._remember(entry)
        return entry

    def _remember(self, entry: dict[str, Any]) -> None:
        self.reloads = [*self.reloads[-9:], entry]

    def _read_config(self) -> Config:
        source = self.gateway.config.source
        if source.startswith("<"):  # built from a dict: nothing to read again
            return self.gateway.config
        try:
            return Config.load(source)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"cannot read {source}: {type(exc).__name__}: {exc}") from None

    def _sighup(self) -> None:
        async def run() -> None:
            with contextlib.suppress(ConfigError):  # logged; the old config stays
                await self.reload("SIGHUP", broadcast=False)

        task = asyncio.ensure_future(run())
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    # ------------------------------------------------------------------ the fleet

    async def _publish_share(self) -> None:
        """Every ``metrics_refresh`` seconds: this instance's ledger totals, for every
        instance's dashboard (:meth:`fleet`)."""
        from llmkernel_gateway.dashboard import fleet_share

        failing = False
        while True:
            await asyncio.sleep(self.gateway.settings.metrics_refresh)
            dashboard = self.gateway.dashboard()
            ledger, name = dashboard.store, dashboard.identity
            if ledger is None or name is None:
                continue
            try:
                now = time.time()
                share = await asyncio.to_thread(fleet_share, ledger, now)
                await self.store.publish_share(name, share, now)  # type: ignore[union-attr]
                failing = False
            except Exception as exc:
                if not failing:  # once per outage
                    log.warning("gateway.fleet.publish_failed", error=str(exc)[:300])
                failing = True

    async def fleet(self) -> dict[str, Any] | None:
        """The fleet's totals (every instance's fresh share summed), with
        ``[redis]``; ``None`` without."""
        store = self.store
        if not hasattr(store, "fleet_shares"):
            return None
        from llmkernel_gateway.dashboard import fleet_sum

        try:
            shares = await store.fleet_shares(time.time())  # type: ignore[union-attr]
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}
        return {
            **fleet_sum(shares),
            "members": [{"name": e.get("name"), "at": e.get("at")} for e in shares],
        }

    # ------------------------------------------------------------------ key use

    def _take_used(self) -> dict[str, float]:
        used, self.used = self.used, {}
        return {name: at for name, at in used.items() if name in self.records}

    async def _write_usage(self) -> None:
        while True:
            await asyncio.sleep(USAGE_EVERY)
            used = self._take_used()
            if used and self.store is not None:
                try:
                    await self.store.touch(used)
                except Exception as exc:
                    log.warning("gateway.keystore.touch_failed", error=str(exc)[:300])


def _warn_restart(old: Any, new: Any) -> None:
    """Settings a reload cannot change in a running server."""
    for name in ("host", "port", "workers", "session_header", "responses_store", "keys_path"):
        if getattr(old, name) != getattr(new, name):
            log.warning("gateway.reload_needs_restart", setting=name)


def bump_reload(run_dir: str) -> None:
    """In ``llmkernel serve --workers N``'s supervisor, on SIGHUP: bump the counter
    file every worker reads with the store's stamp (replaced whole, never torn)."""
    path = Path(run_dir, RELOAD_FILE)
    try:
        count = int(path.read_text() or 0)
    except (OSError, ValueError):
        count = 0
    temporary = path.with_suffix(".tmp")
    temporary.write_text(str(count + 1))
    os.replace(temporary, path)
