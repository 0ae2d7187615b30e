"""The gateway's ``[plugin.gateway]`` table and its keys, checked strictly.

::

    [plugin.gateway]
    port = 4000
    max_body_bytes = 16_777_216

    [plugin.gateway.keys.team-a]
    hash = "sha256:9f86d0..."          # from `llmkernel gateway-keys create team-a --print-toml`
    models = ["openai/*", "fast"]      # what this key may call; empty: everything
    tenant = "team-a"                  # cache namespace, ledger and budgets (default: the name)
    budget = { day = 5.0 }             # handed to the budgets plugin when installed
    rate_limit = { requests_per_minute = 60 }

Only hashes are stored: a key is shown once, when it is created.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from llmkernel.errors import ConfigError
from llmkernel.options import parse_options

if TYPE_CHECKING:
    from llmkernel.config import Config

PLUGIN_NAME = "gateway"
HASH_PREFIX = "sha256:"


@attrs.frozen(kw_only=True)
class KeySettings:
    """One ``[plugin.gateway.keys.<name>]`` table."""

    hash: str
    models: list[str] = attrs.field(factory=list)
    tenant: str | None = None
    admin: bool = False
    budget: dict[str, Any] = attrs.field(factory=dict)
    rate_limit: dict[str, Any] = attrs.field(factory=dict)
    metadata: dict[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        digest = self.hash.removeprefix(HASH_PREFIX)
        if not self.hash.startswith(HASH_PREFIX) or len(digest) != 64:
            raise ValueError(
                "hash must be 'sha256:<64 hex digits>' as printed by "
                "`llmkernel gateway-keys create NAME --print-toml` (never the key itself)"
            )
        try:
            int(digest, 16)
        except ValueError:
            raise ValueError("hash must be 'sha256:<64 hex digits>'") from None


@attrs.frozen(kw_only=True)
class Key:
    """A configured key, as the gateway uses it: never holds the secret."""

    name: str
    digest: str
    models: tuple[str, ...] = ()
    tenant: str = ""
    admin: bool = False
    budget: Mapping[str, Any] = attrs.field(factory=dict)
    rate_limit: Mapping[str, Any] = attrs.field(factory=dict)
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    #: epoch seconds after which the key is refused (keys of the key store)
    expires_at: float | None = None
    disabled: bool = False
    #: ``config`` (a ``[plugin.gateway.keys]`` table: read-only) or ``store``
    source: str = "config"

    def allows(self, model: str) -> bool:
        """Whether this key may call ``model`` (the name the client sent)."""
        if not self.models:
            return True
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def request_metadata(self) -> dict[str, str]:
        """What the kernel's plugins see of this key (``tenant``, ``key``)."""
        return {**self.metadata, "tenant": self.tenant, "key": self.name}


@attrs.frozen(kw_only=True)
class ConnectionLimits:
    """What one connection may hold of the server before its request reaches the app
    (enforced by :class:`~llmkernel_gateway.protocol.GatewayProtocol`)."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_connections: int = 2048


@attrs.frozen(kw_only=True)
class GatewaySettings:
    """``[plugin.gateway]``: every key is optional."""

    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    max_body_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64  # nesting of arrays and objects in a request body
    max_header_bytes: int = 64 * 1024  # request line and headers, then 431
    max_headers: int = 100  # header fields, then 431
    header_timeout: float = 10.0  # seconds for a request's head to arrive, then 408
    idle_timeout: float = 30.0  # seconds without a byte from the client, then closed
    max_connections: int = 2048  # open connections per worker; more are closed at once
    request_timeout: float = 600.0  # seconds for a whole request, then 504
    shutdown_timeout: float = 30.0  # in-flight requests get this long after SIGTERM
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    access_log: bool = True
    status_refresh: float = 3.0  # seconds between status page refreshes
    session_ttl: float = 8 * 3600.0  # seconds a status page login lasts
    public_metrics: bool = False  # /metrics without a key (for a scraper on a private net)
    metrics_refresh: float = 5.0  # seconds between a worker's copies of its plugins' figures
    keys: dict[str, KeySettings] = attrs.field(factory=dict)
    # the Responses and Messages APIs (llmkernel_gateway.responses, .messages)
    #: where /v1/responses keeps stored responses: "sqlite" (the file below) or "none"
    responses_store: Literal["sqlite", "none"] = "sqlite"
    #: the SQLite file (default: $XDG_DATA_HOME/llmkernel/gateway/responses.db)
    responses_path: str | None = None
    responses_ttl: float = 30 * 86400.0  # seconds a stored response is kept
    #: the header that names a conversation (session affinity); "" turns it off
    session_header: str = "x-claude-code-session-id"
    max_sessions: int = 10_000  # sessions remembered at once (least recent forgotten)
    affinity_ttl: float = 3600.0  # seconds a quiet session keeps its deployment
    ping_interval: float = 10.0  # seconds of silence before a /v1/messages stream pings
    # keys and settings changed while it runs (llmkernel_gateway.keystore, .runtime)
    #: the key store's SQLite file (default: $XDG_DATA_HOME/llmkernel/gateway/keys.db);
    #: with [redis] set the keys live in Redis instead
    keys_path: str | None = None
    control_refresh: float = 1.0  # seconds between two looks at the key store
    public_health: bool = False  # /health shows deployments without an admin key

    def __attrs_post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.request_timeout <= 0 or self.shutdown_timeout < 0:
            raise ValueError("request_timeout must be positive, shutdown_timeout not negative")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not 0 < self.port < 65536:
            raise ValueError("port must be between 1 and 65535")
        if self.status_refresh <= 0 or self.metrics_refresh <= 0:
            raise ValueError("status_refresh and metrics_refresh must be positive")
        if self.responses_ttl <= 0 or self.session_ttl <= 0 or self.ping_interval <= 0:
            raise ValueError("responses_ttl, session_ttl and ping_interval must be positive")
        if self.affinity_ttl <= 0:
            raise ValueError("affinity_ttl must be positive")
        if not 0.05 <= self.control_refresh <= 60:
            raise ValueError("control_refresh must be between 0.05 and 60 seconds")
        if self.max_sessions < 0:
            raise ValueError("max_sessions must not be negative")
        if self.max_json_depth < 2:
            raise ValueError("max_json_depth must be at least 2")
        if self.max_header_bytes < 1024 or self.max_headers < 8:
            raise ValueError("max_header_bytes must be at least 1024, max_headers at least 8")
        if self.header_timeout <= 0 or self.idle_timeout <= 0:
            raise ValueError("header_timeout and idle_timeout must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            max_header_bytes=self.max_header_bytes,
            max_headers=self.max_headers,
            header_timeout=self.header_timeout,
            idle_timeout=self.idle_timeout,
            max_connections=self.max_connections,
        )

    def key_list(self) -> list[Key]:
        return [
            Key(
                name=name,
                digest=settings.hash.removeprefix(HASH_PREFIX),
                models=tuple(settings.models),
                tenant=settings.tenant or name,
                admin=settings.admin,
                budget=settings.budget,
                rate_limit=settings.rate_limit,
                metadata=settings.metadata,
            )
            for name, settings in self.keys.items()
        ]


def load_settings(config: Config) -> GatewaySettings:
    """``[plugin.gateway]`` from ``config``, refused with the key named when wrong."""
    table = config.plugin_settings(PLUGIN_NAME)
    settings = parse_options(GatewaySettings, table, where=config.where(f"plugin.{PLUGIN_NAME}"))
    seen: dict[str, str] = {}
    for name, key in settings.keys.items():
        other = seen.get(key.hash)
        if other is not None:
            raise ConfigError(
                f"keys {other!r} and {name!r} in {config.where('plugin.gateway.keys')} "
                "have the same hash"
            )
        seen[key.hash] = name
    from llmkernel_gateway.handoff import check_key_limits

    check_key_limits(settings.key_list(), config.where("plugin.gateway.keys"))
    return settings


__all__ = ["ConnectionLimits", "GatewaySettings", "Key", "KeySettings", "load_settings"]
