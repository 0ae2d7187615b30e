"""Per-key budgets and rate limits, handed to the plugins that enforce them.

A key's ``budget = { day = 5, month = 100, total = 1000 }`` (USD) becomes
``[[plugin.budgets.limits]]`` entries for that key in the config of the gateway's
kernel, so the budgets plugin (``llmkernel-budgets``) reserves and settles them like
any other limit: a key over budget gets a 429 with ``Retry-After`` before anything is
sent upstream. A budget on a key without that plugin installed is refused at
startup: it would not be enforced.

A key's ``rate_limit = { requests_per_minute = 60 }`` is enforced by the gateway
itself, per worker process, before the kernel is called (a token bucket; 429 with
``Retry-After``). Token-per-minute and provider-side limits belong to the
ratelimit plugin's own ``[plugin.ratelimit]`` table (``per = ["key"]``).
"""

from __future__ import annotations

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


@attrs.define
class _Bucket:
    capacity: float
    rate: float  # tokens a second
    tokens: float
    stamp: float


class KeyLimiter:
    """Requests per minute per key: a token bucket each, full at start."""

    def __init__(self, keys: Iterable[Key]) -> None:
        now = time.monotonic()
        self._buckets: dict[str, _Bucket] = {}
        for key in keys:
            rpm = key.rate_limit.get("requests_per_minute")
            if rpm:
                capacity = float(rpm)
                self._buckets[key.name] = _Bucket(
                    capacity=capacity, rate=capacity / 60.0, tokens=capacity, stamp=now
                )

    def take(self, key: str) -> float | None:
        """Take one request; ``None`` when allowed, else seconds until one is."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        now = time.monotonic()
        bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.stamp) * bucket.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / bucket.rate


__all__ = [
    "KeyLimiter",
    "check_key_limits",
    "require_budgets_plugin",
    "with_key_budgets",
]
