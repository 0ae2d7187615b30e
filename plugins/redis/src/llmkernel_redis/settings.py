"""The top-level ``[redis]`` table: where the shared Redis is and how to use it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from llmkernel.errors import ConfigError

__all__ = ["SCHEMES", "RedisSettings", "parse_settings", "redact_url"]

#: URL schemes redis-py opens: TCP, TLS and a unix socket
SCHEMES = ("redis", "rediss", "unix")
_PREFIX = re.compile(r"^[A-Za-z0-9_.:{}\-]{1,64}$")


def redact_url(url: str) -> str:
    """``url`` with its password (and a user name) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable url>"
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def _check_url(key: str) -> Any:
    def check(instance: object, attribute: Any, value: str | None) -> None:
        if value is None:
            return
        try:
            parts = urlsplit(value)
        except ValueError:
            raise ValueError(f"{key} is not a URL") from None
        if parts.scheme not in SCHEMES:
            raise ValueError(
                f"{key} must start with redis://, rediss:// or unix:// (got {redact_url(value)!r})"
            )
        if parts.scheme == "unix" and not parts.path:
            raise ValueError(f"{key}: a unix:// URL needs the socket's path")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError(f"{key}: {parts.scheme}:// needs a host")

    return check


def _positive(instance: object, attribute: Any, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive")


@attrs.frozen(kw_only=True, repr=False)
class RedisSettings:
    """``url``: the Redis of limits, budgets, keys and breakers (``redis://``,
    ``rediss://`` or ``unix://``); ``cache_url``: another one for cache entries
    (default: ``url``), so the cache's eviction never evicts a limiter or budget
    key; ``key_prefix`` before every key; ``timeout`` (seconds) for every call and
    ``connect_timeout`` for a new connection, both short: a slow Redis is a
    degraded Redis; ``pool_size`` connections per event loop; ``instances`` the
    fleet's size N (a rate limit falls back to limit/N when Redis is gone);
    ``fail_closed`` refuses instead of falling back; ``retry_interval`` the
    seconds between two tries while Redis is down."""

    url: str = attrs.field(validator=_check_url("url"))
    cache_url: str | None = attrs.field(default=None, validator=_check_url("cache_url"))
    key_prefix: str = "llmkernel:"
    timeout: float = attrs.field(default=0.25, validator=_positive)
    connect_timeout: float = attrs.field(default=0.25, validator=_positive)
    pool_size: int = attrs.field(default=32, validator=_positive)
    instances: int = attrs.field(default=1, validator=_positive)
    fail_closed: bool = False
    retry_interval: float = attrs.field(default=1.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if not _PREFIX.match(self.key_prefix):
            raise ValueError(
                "key_prefix must be 1 to 64 characters of letters, digits and _ . : - { }"
            )

    def __repr__(self) -> str:
        cache = redact_url(self.cache_url) if self.cache_url else None
        return (
            f"RedisSettings(url={redact_url(self.url)!r}, cache_url={cache!r}, "
            f"key_prefix={self.key_prefix!r}, instances={self.instances})"
        )


def parse_settings(table: Mapping[str, Any], *, source: str) -> RedisSettings:
    """``[redis]`` checked strictly: unknown keys, wrong types and bad URLs refused,
    naming the key."""
    from llmkernel.options import parse_options

    where = f"[redis] in {source}"
    if "url" not in table:
        raise ConfigError(f"missing required key 'url' in {where} (or set LLMKERNEL_REDIS_URL)")
    return parse_options(RedisSettings, table, where=where)
