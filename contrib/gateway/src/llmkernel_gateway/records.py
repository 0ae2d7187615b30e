"""Keys made at run time: the record a key store keeps, and the admin API's input
checked field by field.

A :class:`KeyRecord` holds what the gateway needs of a key and never its secret:
the SHA-256 of each secret that opens it (:class:`Secret`; after a rotation the old
one stays valid until its ``until``), its models, tenant, metadata, budget, rate
limit, expiry, and whether it is an admin key or disabled. It becomes the same
:class:`~llmkernel_gateway.settings.Key` a config file's key does, so everything
downstream (budgets, rate limits, the ledger, metrics) treats both alike.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from llmkernel_gateway.handoff import BUDGET_PERIODS, RATE_KEYS
from llmkernel_gateway.settings import Key

__all__ = [
    "EDITABLE",
    "MAX_SECRETS",
    "BadInput",
    "KeyRecord",
    "Secret",
    "check_name",
    "parse_changes",
    "parse_time",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: fields a create or a PATCH may set
EDITABLE = (
    "models",
    "tenant",
    "metadata",
    "budget",
    "rate_limit",
    "expires_at",
    "expires_in",
    "admin",
    "disabled",
)
#: secrets one key may have at once (the current one and rotations in their grace)
MAX_SECRETS = 4
_MAX_MODELS = 100
_MAX_METADATA = 32
_MAX_TEXT = 256
#: metadata names the gateway sets itself
_RESERVED = frozenset(("tenant", "key", "session"))


class BadInput(ValueError):
    """A field of an admin request is wrong; ``param`` names it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@attrs.frozen(kw_only=True)
class Secret:
    """The SHA-256 (hex) of a secret that opens a key, valid until ``until`` (epoch
    seconds; ``None``: as long as the key)."""

    digest: str
    until: float | None = None


@attrs.frozen(kw_only=True)
class KeyRecord:
    """A key of the key store (never its secret)."""

    name: str
    secrets: tuple[Secret, ...]
    created_at: float
    updated_at: float
    expires_at: float | None = None
    models: tuple[str, ...] = ()
    tenant: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    #: USD per period (``day``, ``month``, ``total``) as exact decimal text
    budget: Mapping[str, str] = attrs.field(factory=dict)
    rate_limit: Mapping[str, float] = attrs.field(factory=dict)
    admin: bool = False
    disabled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "secrets": [{"digest": s.digest, "until": s.until} for s in self.secrets],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "models": list(self.models),
            "tenant": self.tenant,
            "metadata": dict(self.metadata),
            "budget": dict(self.budget),
            "rate_limit": dict(self.rate_limit),
            "admin": self.admin,
            "disabled": self.disabled,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyRecord:
        return cls(
            name=str(data["name"]),
            secrets=tuple(
                Secret(digest=str(s["digest"]), until=s.get("until"))
                for s in data.get("secrets", ())
            ),
            created_at=float(data["created_at"]),
            updated_at=float(data.get("updated_at", data["created_at"])),
            expires_at=data.get("expires_at"),
            models=tuple(data.get("models", ())),
            tenant=data.get("tenant"),
            metadata=dict(data.get("metadata", {})),
            budget={str(k): str(v) for k, v in data.get("budget", {}).items()},
            rate_limit=dict(data.get("rate_limit", {})),
            admin=bool(data.get("admin", False)),
            disabled=bool(data.get("disabled", False)),
        )

    def live_secrets(self, now: float) -> tuple[Secret, ...]:
        return tuple(s for s in self.secrets if s.until is None or s.until > now)

    def key(self) -> Key:
        """The key as the gateway uses it (budgets as ``Decimal``)."""
        return Key(
            name=self.name,
            digest=self.secrets[0].digest if self.secrets else "",
            models=self.models,
            tenant=self.tenant or self.name,
            admin=self.admin,
            budget={period: Decimal(amount) for period, amount in self.budget.items()},
            rate_limit=dict(self.rate_limit),
            metadata=dict(self.metadata),
            expires_at=self.expires_at,
            disabled=self.disabled,
            source="store",
        )

    def state(self, now: float) -> str:
        """``active``, ``disabled`` or ``expired``."""
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def public(self, now: float) -> dict[str, Any]:
        """What the admin API shows: the settings, never a hash."""
        grace = [s.until for s in self.live_secrets(now) if s.until is not None]
        return {
            "name": self.name,
            "source": "store",
            "read_only": False,
            "state": self.state(now),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "models": list(self.models),
            "tenant": self.tenant or self.name,
            "metadata": dict(self.metadata),
            "budget": dict(self.budget),
            "rate_limit": dict(self.rate_limit),
            "admin": self.admin,
            "disabled": self.disabled,
            "previous_secret_valid_until": max(grace) if grace else None,
        }


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadInput(
            "name must be 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
            "name",
        )
    return name


def parse_time(value: Any, param: str) -> float | None:
    """Epoch seconds from a number or an ISO 8601 text (``2027-01-31T00:00:00Z``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadInput(f"{param} must be a time (epoch seconds or ISO 8601)", param)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadInput(f"{param} {value!r} is not an ISO 8601 time", param) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    raise BadInput(f"{param} must be a time (epoch seconds or ISO 8601)", param)


def _text(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise BadInput(
            f"{param} must be a non-empty string of at most {_MAX_TEXT} characters", param
        )
    return value


def _budget(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise BadInput("budget must be an object: {day, month, total} in USD", "budget")
    out: dict[str, str] = {}
    for period, amount in value.items():
        param = f"budget.{period}"
        if period not in BUDGET_PERIODS:
            raise BadInput(
                f"unknown budget period {period!r}; known: {', '.join(BUDGET_PERIODS)}", param
            )
        if amount is None:
            continue
        try:
            money = Decimal(str(amount))
        except InvalidOperation:
            money = Decimal(-1)
        if isinstance(amount, bool) or not money.is_finite() or money < 0:
            raise BadInput(f"{param} must be a non-negative amount in USD, not {amount!r}", param)
        out[str(period)] = format(money, "f")
    return out


def _rate_limit(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise BadInput(
            "rate_limit must be an object: {requests_per_minute, tokens_per_minute, window}",
            "rate_limit",
        )
    out: dict[str, float] = {}
    for name, number in value.items():
        param = f"rate_limit.{name}"
        if name not in RATE_KEYS:
            raise BadInput(
                f"unknown rate_limit setting {name!r}; known: {', '.join(RATE_KEYS)}", param
            )
        if number is None:
            continue
        if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
            raise BadInput(f"{param} must be a positive number, not {number!r}", param)
        out[str(name)] = number
    if out and set(out) == {"window"}:
        raise BadInput("rate_limit needs requests_per_minute or tokens_per_minute", "rate_limit")
    return out


def parse_changes(data: Any, *, now: float) -> dict[str, Any]:
    """The fields of an admin request body (a create or a PATCH), checked: a
    :class:`BadInput` names the first wrong one. ``expires_in`` (seconds from now)
    becomes ``expires_at``."""
    if not isinstance(data, Mapping):
        raise BadInput("the body must be a JSON object")
    changes: dict[str, Any] = {}
    for field, value in data.items():
        if field == "name":
            continue  # the caller reads it
        if field not in EDITABLE:
            raise BadInput(
                f"unknown field {field!r}; a key has: name, {', '.join(EDITABLE)}", field
            )
        if field == "models":
            if not isinstance(value, list) or len(value) > _MAX_MODELS:
                raise BadInput(f"models must be a list of at most {_MAX_MODELS} patterns", "models")
            changes["models"] = tuple(_text(v, "models") for v in value)
        elif field == "tenant":
            changes["tenant"] = None if value is None else _text(value, "tenant")
        elif field == "metadata":
            if not isinstance(value, Mapping) or len(value) > _MAX_METADATA:
                raise BadInput(
                    f"metadata must be an object of at most {_MAX_METADATA} strings", "metadata"
                )
            for name in value:
                if name in _RESERVED:
                    raise BadInput(f"metadata.{name} is set by the gateway", f"metadata.{name}")
            changes["metadata"] = {
                _text(k, "metadata"): _text(v, f"metadata.{k}") for k, v in value.items()
            }
        elif field == "budget":
            changes["budget"] = _budget(value)
        elif field == "rate_limit":
            changes["rate_limit"] = _rate_limit(value)
        elif field == "expires_at":
            changes["expires_at"] = parse_time(value, "expires_at")
        elif field == "expires_in":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise BadInput("expires_in must be a positive number of seconds", "expires_in")
            changes["expires_at"] = now + float(value)
        elif isinstance(value, bool):  # admin, disabled
            changes[field] = value
        else:
            raise BadInput(f"{field} must be true or false", field)
    return changes
