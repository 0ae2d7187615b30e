"""Per-key budgets and rate limits, handed to the plugins that enforce them.

A key's ``budget = { day = 5, month = 100, total = 1000 }`` (USD) becomes
``[[plugin.budgets.limits]]`` entries for that key in the config of the gateway's
kernel, so the budgets plugin (``llmkernel-budgets``) reserves and settles them like
any other limit: a key over budget gets a 429 with ``Retry-After`` before anything is
sent upstream. A budget on a key without that plugin installed is refused at
startup: it would not be enforced.

A key's ``rate_limit = { requests_per_minute = 60, tokens_per_minute = 40_000 }``
becomes a rule of the ratelimit plugin (``llmkernel-ratelimit``) scoped to that key,
``[plugin.ratelimit.limits."key:<name>"]`` with ``pattern = "*"``, ``key = <name>``
and ``mode = "reject"``: checked before every attempt, refused at once (429 with
``Retry-After``), counted in one window for the key across every deployment. With
``llmkernel serve --workers N`` the plugin's counts live in a file of the workers'
shared run directory (``store = "file"``), so a limit holds for the server as a
whole; a shared store across machines (Redis) plugs in behind the same interface.
A rate limit on a key without that plugin is refused at startup, as a budget is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from llmkernel.config import Config
from llmkernel.errors import ConfigError
from llmkernel_gateway.settings import Key

BUDGET_PERIODS = ("day", "month", "total")
RATE_KEYS = ("requests_per_minute", "tokens_per_minute", "window")
BUDGETS_PLUGIN = "budgets"
RATELIMIT_PLUGIN = "ratelimit"
#: set by ``llmkernel serve --workers N`` for its workers: their shared run directory
SHARED_DIR_ENV = "LLMKERNEL_GATEWAY_RUN_DIR"


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
                    f"known: {', '.join(RATE_KEYS)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(
                    f"rate_limit.{name} of key {key.name!r} in {where} must be a positive "
                    f"number, not {value!r}"
                )


def with_key_budgets(config: Config, keys: Iterable[Key]) -> Config:
    """``config`` with each key's budget added to ``[plugin.budgets] limits``."""
    extra: list[dict[str, Any]] = [
        {
            "name": f"key:{key.name}:{period}",
            "amount": format(amount, "f") if isinstance(amount, Decimal) else amount,
            "period": period,
            "key": key.name,
        }
        for key in keys
        for period, amount in key.budget.items()
    ]
    if not extra:
        return config
    budgets = dict(config.plugin_settings(BUDGETS_PLUGIN))
    budgets["limits"] = [*budgets.get("limits", []), *extra]
    return attrs.evolve(config, plugin={**config.plugin, BUDGETS_PLUGIN: budgets})


def with_key_limits(config: Config, keys: Iterable[Key], shared_dir: str | None) -> Config:
    """``config`` with each key's ``rate_limit`` as a rule of ``[plugin.ratelimit]``
    scoped to that key (``key:<name>``, refusing at once), and with ``shared_dir``
    (``serve --workers N``) the rate limiter's counts in a file there, shared by
    every worker, unless the config names a store of its own."""
    rules = {
        f"key:{key.name}": {"pattern": "*", "key": key.name, "mode": "reject", **key.rate_limit}
        for key in keys
        if key.rate_limit
    }
    table = dict(config.plugin_settings(RATELIMIT_PLUGIN))
    if not rules and not table:
        return config
    if rules:
        if not table:  # only the keys' limits: nothing else of the plugin turned on
            table["learn_from_headers"] = False
        limits = dict(table.get("limits", {}))
        clash = sorted(set(limits) & set(rules))
        if clash:
            raise ConfigError(
                f"[plugin.ratelimit.limits.{clash[0]!r}] has the name the gateway gives "
                f"key {clash[0][4:]!r}'s rate_limit: rename the table"
            )
        table["limits"] = {**limits, **rules}
    if shared_dir is not None and table.get("store", "memory") == "memory":
        table["store"] = "file"
        table["path"] = os.path.join(shared_dir, "ratelimit.buckets")
    return attrs.evolve(config, plugin={**config.plugin, RATELIMIT_PLUGIN: table})


def require_plugins(keys: Iterable[Key], loaded: Iterable[str]) -> None:
    """Refuse to start when a key has a budget or a rate limit no plugin enforces."""
    names = set(loaded)
    keys = list(keys)
    for plugin, attribute, what, dist in (
        (BUDGETS_PLUGIN, "budget", "a budget", "llmkernel-budgets"),
        (RATELIMIT_PLUGIN, "rate_limit", "a rate limit", "llmkernel-ratelimit"),
    ):
        having = [k.name for k in keys if getattr(k, attribute)]
        if having and plugin not in names:
            raise ConfigError(
                f"key(s) {', '.join(repr(n) for n in having)} have {what}, but the "
                f"{plugin} plugin is not installed or not enabled (pip install {dist}): "
                f"it would not be enforced"
            )


__all__ = [
    "SHARED_DIR_ENV",
    "check_key_limits",
    "require_plugins",
    "with_key_budgets",
    "with_key_limits",
]
