"""Per-key budgets and rate limits, handed to the plugins that enforce them.

A key's ``budget = { day = 5, month = 100, total = 1000 }`` (USD) becomes
``[[plugin.budgets.limits]]`` entries for that key in the config of the gateway's
kernel, so the budgets plugin (``llmkernel-budgets``) reserves and settles them like
any other limit: a key over budget gets a 429 with ``Retry-After`` before anything is
sent upstream. A budget on a key without that plugin installed is refused at
startup: it would not be enforced.

A key's ``rate_limit = { requests_per_minute = 60 }`` is enforced by the gateway
itself before the kernel is called (a token bucket; 429 with ``Retry-After``), shared
by all workers of one ``llmkernel serve --workers N``. Token-per-minute and
provider-side limits belong to the ratelimit plugin's own ``[plugin.ratelimit]``
table (``per = ["key"]``).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from llmkernel.config import Config
from llmkernel.errors import ConfigError
from llmkernel_gateway.settings import Key

BUDGET_PERIODS = ("day", "month", "total")
RATE_KEYS = ("requests_per_minute",)
BUDGETS_PLUGIN = "budgets"


def check_key_limits(keys: Iterable[Key], where: str) -> None:
    """Refuse unknown or wrong budget and rate-limit keys, naming them."""
    for key in keys:
        for period, amount in key.budget.items():
            if period not in BUDGET_PERIODS:
                raise ConfigError(
                    f"unknown budget period {period!r} for key {key.name!r} in {where}; "
                    f"known: {', '.join(BUDGET_PERIODS)}"
                )
            try:
                value = Decimal(str(amount))
            except InvalidOperation:
                value = Decimal(-1)
            if isinstance(amount, bool) or value < 0:
                raise ConfigError(
                    f"budget {period!r} of key {key.name!r} in {where} must be a "
                    f"non-negative amount in USD, not {amount!r}"
                )
        for name, value in key.rate_limit.items():
            if name not in RATE_KEYS:
                raise ConfigError(
                    f"unknown rate_limit setting {name!r} for key {key.name!r} in {where}; "
                    f"known: {', '.join(RATE_KEYS)} (token limits go in [plugin.ratelimit])"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(
                    f"rate_limit.{name} of key {key.name!r} in {where} must be a positive "
                    f"number, not {value!r}"
                )


def with_key_budgets(config: Config, keys: Iterable[Key]) -> Config:
    """``config`` with each key's budget added to ``[plugin.budgets] limits``."""
    extra: list[dict[str, Any]] = [
        {"name": f"key:{key.name}:{period}", "amount": amount, "period": period, "key": key.name}
        for key in keys
        for period, amount in key.budget.items()
    ]
    if not extra:
        return config
    budgets = dict(config.plugin_settings(BUDGETS_PLUGIN))
    budgets["limits"] = [*budgets.get("limits", []), *extra]
    return attrs.evolve(config, plugin={**config.plugin, BUDGETS_PLUGIN: budgets})


def require_budgets_plugin(keys: Iterable[Key], loaded: Iterable[str]) -> None:
    with_budget = [k.name for k in keys if k.budget]
    if with_budget and BUDGETS_PLUGIN not in set(loaded):
        raise ConfigError(
            f"key(s) {', '.join(repr(n) for n in with_budget)} have a budget, but the "
            "budgets plugin is not installed or not enabled (pip install llmkernel-budgets): "
            "the budget would not be enforced"
        )


SHARED_DIR_ENV = "LLMKERNEL_GATEWAY_RUN_DIR"
_SLOT = struct.Struct("dd")  # a bucket: tokens left, when they were counted (monotonic)


class KeyLimiter:
    """Requests per minute per key: a token bucket each, full at start.

    With ``shared_dir`` (set by ``llmkernel serve --workers N`` for its workers) the
    buckets live in one file there, mapped into every worker and updated under an
    exclusive ``flock``: a key's limit holds across all workers, not per worker.
    Without it they live in this process (one worker: one event loop, no lock)."""

    def __init__(self, keys: Iterable[Key], shared_dir: str | None = None) -> None:
        self._limits: dict[str, float] = {}
        for key in keys:
            rpm = key.rate_limit.get("requests_per_minute")
            if rpm:
                self._limits[key.name] = float(rpm)
        self._offsets = {name: i * _SLOT.size for i, name in enumerate(sorted(self._limits))}
        size = max(1, len(self._offsets)) * _SLOT.size
        self._fd: int | None = None
        self._state: bytearray | mmap.mmap = bytearray(size)
        if shared_dir is not None and self._limits:
            self._fd, self._state = _shared(os.path.join(shared_dir, "key-buckets"), size)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if self._fd is None or _fresh(self._state):
                now = time.monotonic()
                for name, offset in self._offsets.items():
                    _SLOT.pack_into(self._state, offset, self._limits[name], now)
        finally:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def take(self, key: str) -> float | None:
        """Take one request; ``None`` when allowed, else seconds until one is."""
        limit = self._limits.get(key)
        if limit is None:
            return None
        rate = limit / 60.0
        offset = self._offsets[key]
        state, fd = self._state, self._fd
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            left, stamp = _SLOT.unpack_from(state, offset)
            now = time.monotonic()
            tokens: float = min(limit, left + max(0.0, now - stamp) * rate)
            if tokens >= 1.0:
                _SLOT.pack_into(state, offset, tokens - 1.0, now)
                return None
            _SLOT.pack_into(state, offset, tokens, now)
            return (1.0 - tokens) / rate
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)


def _shared(path: str, size: int) -> tuple[int, mmap.mmap]:
    """The buckets' file, at least ``size`` bytes (a new one is zeros), mapped."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return fd, mmap.mmap(fd, size)


def _fresh(state: bytearray | mmap.mmap) -> bool:
    """A file no worker has filled yet (every stamp is zero)."""
    return all(
        _SLOT.unpack_from(state, offset)[1] == 0.0 for offset in range(0, len(state), _SLOT.size)
    )


__all__ = [
    "KeyLimiter",
    "check_key_limits",
    "require_budgets_plugin",
    "with_key_budgets",
]
