"""What an operator does to the key store's keys: create, update, rotate, revoke,
and how a key is shown. The admin API (:mod:`llmkernel_gateway.admin`) and
``llmkernel gateway-keys`` (against the store, without a running gateway) both call
these, so both check input and audit alike.

A secret is made here, returned once to the caller, and only its SHA-256 is kept;
nothing here logs, audits or shows it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel_gateway.keys import digest, new_key
from llmkernel_gateway.keystore import Conflict, Missing
from llmkernel_gateway.records import (
    MAX_SECRETS,
    BadInput,
    KeyRecord,
    Secret,
    check_name,
    parse_changes,
)

if TYPE_CHECKING:
    from llmkernel_gateway.keystore import KeyStore
    from llmkernel_gateway.settings import Key

__all__ = [
    "DEFAULT_GRACE",
    "MAX_GRACE",
    "ReadOnly",
    "config_key_json",
    "create",
    "revoke",
    "rotate",
    "update",
]

#: seconds the old secret keeps working after a rotation, unless the caller says
DEFAULT_GRACE = 3600.0
#: the longest grace period a rotation may give (30 days)
MAX_GRACE = 30 * 86400.0


class ReadOnly(Exception):
    """The key is the config file's: change it there."""


def _fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Changed fields for an audit entry: names and values, never a secret (a key
    record has none; budgets and limits are settings)."""
    return {name: (list(v) if isinstance(v, tuple) else v) for name, v in changes.items()}


def _refuse_config(name: str, config_names: Iterable[str]) -> None:
    if name in set(config_names):
        raise ReadOnly(
            f"key {name!r} is defined in the config file ([plugin.gateway.keys]): it is "
            "read-only here; change it in the file and reload"
        )


async def create(
    store: KeyStore,
    data: Mapping[str, Any],
    *,
    actor: str,
    config_names: Iterable[str] = (),
    now: float | None = None,
) -> tuple[KeyRecord, str]:
    """A new key from an admin request body (``name`` and the editable fields);
    the record and its secret (shown once)."""
    now = time.time() if now is None else now
    name = check_name(data.get("name"))
    _refuse_config(name, config_names)
    changes = parse_changes(data, now=now)
    secret = new_key()

    def change(current: KeyRecord | None) -> KeyRecord:
        if current is not None:
            raise Conflict(f"a key named {name!r} exists already")
        return KeyRecord(
            name=name,
            secrets=(Secret(digest=digest(secret)),),
            created_at=now,
            updated_at=now,
            **changes,
        )

    record = await store.change_key(
        name, change, actor=actor, action="key.create", details=_fields(changes)
    )
    assert record is not None
    return record, secret


async def update(
    store: KeyStore,
    name: str,
    data: Mapping[str, Any],
    *,
    actor: str,
    config_names: Iterable[str] = (),
    now: float | None = None,
) -> KeyRecord:
    """Change the fields ``data`` names (``null`` clears tenant, expiry, a budget
    period or a limit); the new record."""
    now = time.time() if now is None else now
    _refuse_config(name, config_names)
    if "name" in data:
        raise BadInput("a key's name cannot change: create a new key", "name")
    changes = parse_changes(data, now=now)

    def change(current: KeyRecord | None) -> KeyRecord:
        if current is None:
            raise Missing(f"no key named {name!r} in the key store")
        return attrs.evolve(current, updated_at=now, **changes)

    record = await store.change_key(
        name, change, actor=actor, action="key.update", details=_fields(changes)
    )
    assert record is not None
    return record


async def rotate(
    store: KeyStore,
    name: str,
    *,
    grace: float | None,
    actor: str,
    config_names: Iterable[str] = (),
    now: float | None = None,
) -> tuple[KeyRecord, str]:
    """A new secret for ``name``; the ones it had stay valid ``grace`` seconds more
    (0: refused at once). The record and the new secret (shown once)."""
    now = time.time() if now is None else now
    _refuse_config(name, config_names)
    grace = DEFAULT_GRACE if grace is None else grace
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= MAX_GRACE:
        raise BadInput(
            f"grace must be a number of seconds from 0 to {MAX_GRACE:g} (30 days)", "grace"
        )
    secret = new_key()
    until = now + float(grace)

    def change(current: KeyRecord | None) -> KeyRecord:
        if current is None:
            raise Missing(f"no key named {name!r} in the key store")
        old = [
            Secret(digest=s.digest, until=until if s.until is None else min(s.until, until))
            for s in current.live_secrets(now)
        ]
        if grace == 0:
            old = []
        kept = (Secret(digest=digest(secret)), *old)[:MAX_SECRETS]
        return attrs.evolve(current, secrets=kept, updated_at=now)

    record = await store.change_key(
        name, change, actor=actor, action="key.rotate", details={"grace_seconds": float(grace)}
    )
    assert record is not None
    return record, secret


async def revoke(
    store: KeyStore, name: str, *, actor: str, config_names: Iterable[str] = ()
) -> None:
    """Remove ``name`` from the store: every secret of it is refused from the next
    look at the store on (at most ``control_refresh`` seconds on every worker)."""
    _refuse_config(name, config_names)

    def change(current: KeyRecord | None) -> None:
        if current is None:
            raise Missing(f"no key named {name!r} in the key store")

    await store.change_key(name, change, actor=actor, action="key.revoke", details={})


def config_key_json(key: Key) -> dict[str, Any]:
    """A config file's key as the admin API shows it (read-only)."""
    return {
        "name": key.name,
        "source": "config",
        "read_only": True,
        "state": "active",
        "created_at": None,
        "updated_at": None,
        "expires_at": None,
        "models": list(key.models),
        "tenant": key.tenant,
        "metadata": dict(key.metadata),
        "budget": {period: str(amount) for period, amount in key.budget.items()},
        "rate_limit": dict(key.rate_limit),
        "admin": key.admin,
        "disabled": False,
        "previous_secret_valid_until": None,
    }
