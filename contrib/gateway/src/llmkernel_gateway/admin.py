"""The admin API under ``/admin``, for admin keys only (``admin = true``; any other
key gets 403): keys of the key store, spend from the ledger, config reloads,
deployments' live settings and the audit trail. JSON in and out; errors in the
gateway's error shape (``{"error": {"message", "type", "param", "code"}}``).

======  ==================================  ==============================================
method  path                                what
======  ==================================  ==============================================
POST    /admin/keys                         create a key (its secret is in the answer once)
GET     /admin/keys                         every key: the config file's and the store's
GET     /admin/keys/{name}                  one key, with its spend and last use
PATCH   /admin/keys/{name}                  change a store key's settings
POST    /admin/keys/{name}/rotate           a new secret; the old one lasts ``grace`` s
DELETE  /admin/keys/{name}                  revoke: refused with 401 on every worker
GET     /admin/spend?by=key|model|day       spend from the ledger (``since``, ``until``)
POST    /admin/reload                       read the config file again, every worker
GET     /admin/deployments                  deployments' live settings
PATCH   /admin/deployments/{provider/model} disable/enable, priority, weight
GET     /admin/audit?limit=N                who did what, when (newest first)
======  ==================================  ==============================================

A change is written to the key store, then this worker takes it in at once; every
other worker and instance within ``control_refresh`` seconds (1 s by default).
Only the admin API is authenticated by a bearer key alone (never the status page's
login cookie, so a page in a browser cannot be made to call it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from llmkernel import log
from llmkernel.errors import ConfigError
from llmkernel_gateway import failures, keyops, keyrows, wire
from llmkernel_gateway.deployments import parse_override
from llmkernel_gateway.failures import Failure
from llmkernel_gateway.keystore import Conflict, Missing
from llmkernel_gateway.records import BadInput, KeyRecord, parse_time
from llmkernel_gateway.settings import Key

if TYPE_CHECKING:
    from llmkernel_gateway.app import Gateway, Receive, Scope, Send

__all__ = ["MAX_OVERRIDES", "SPEND_GROUPS", "Admin"]

Handler = Callable[..., Awaitable[None]]
#: an admin route: ``(scope, receive, admin key) -> (status, JSON answer)``
Action = Callable[["Scope", "Receive", Key], Awaitable[tuple[int, Any]]]
_JSON = (b"content-type", b"application/json")
#: ``GET /admin/spend?by=``
SPEND_GROUPS = ("key", "model", "day", "tenant", "month", "provider")
#: deployments with live settings at once (the names come from admins' requests)
MAX_OVERRIDES = 1000
_MAX_NAME = 256


def _failure(status: int, message: str, code: str, param: str | None = None) -> Failure:
    kinds = {403: "permission_error", 401: "authentication_error"}
    return Failure(
        status=status,
        message=message,
        type=kinds.get(status, "invalid_request_error"),
        code=code,
        param=param,
        kind="admin",
    )


class Admin:
    """The ``/admin`` routes of one gateway (see the module)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    # ------------------------------------------------------------------ routing

    def match(self, method: str, path: str) -> tuple[Handler | None, bool]:
        """The handler of ``method path`` under ``/admin/``, and whether the path is
        known (a 405 rather than a 404)."""
        parts = path[len("/admin/") :].split("/")
        table: dict[str, Action] = {}
        if parts == ["keys"]:
            table = {"GET": self.list_keys, "POST": self.create_key}
        elif len(parts) == 2 and parts[0] == "keys" and parts[1]:
            table = {"GET": self.show_key, "PATCH": self.update_key, "DELETE": self.revoke_key}
        elif len(parts) == 3 and parts[0] == "keys" and parts[1] and parts[2] == "rotate":
            table = {"POST": self.rotate_key}
        elif parts == ["spend"]:
            table = {"GET": self.spend}
        elif parts == ["reload"]:
            table = {"POST": self.reload}
        elif parts == ["audit"]:
            table = {"GET": self.audit}
        elif parts == ["deployments"]:
            table = {"GET": self.deployments}
        elif len(parts) >= 3 and parts[0] == "deployments" and all(parts[1:]):
            table = {"PATCH": self.update_deployment}
        else:
            return None, False
        handler = table.get(method)
        if handler is None:
            return None, True
        return self._guarded(handler), True

    def _guarded(self, handler: Action) -> Handler:
        async def run(scope: Scope, receive: Receive, send: Send, rid: str, started: float) -> None:
            key = self._admin_key(scope)
            if isinstance(key, Failure):
                await self._send(scope, send, rid, key.status, key.body(), key.headers())
                return
            try:
                status, answer = await handler(scope, receive, key)
            except BadInput as exc:
                failure = failures.bad_request(exc.message, exc.param)
                status, answer = failure.status, failure.body()
            except Missing as exc:
                failure = failures.not_found(str(exc), code="not_found", param=None)
                status, answer = failure.status, failure.body()
            except Conflict as exc:
                status, answer = 409, _failure(409, str(exc), "conflict", "name").body()
            except keyops.ReadOnly as exc:
                status, answer = 409, _failure(409, str(exc), "read_only", "name").body()
            except _Refused as exc:
                status, answer = exc.failure.status, exc.failure.body()
            await self._send(scope, send, rid, status, answer)

        return run

    def _admin_key(self, scope: Scope) -> Key | Failure:
        found = self.gateway._authenticate(scope)
        if found is None:
            return _failure(
                403,
                "the admin API needs an admin key and the gateway has none: make one with "
                "'llmkernel gateway-keys create NAME --admin'",
                "admin_only",
            )
        if isinstance(found, Failure):
            return found
        if not found.admin:
            return _failure(403, f"key {found.name!r} is not an admin key", "admin_only")
        return found

    async def _send(
        self,
        scope: Scope,
        send: Send,
        rid: str,
        status: int,
        answer: Any,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        from llmkernel_gateway.app import _respond

        headers = [_JSON, (b"x-request-id", rid.encode()), (b"cache-control", b"no-store")]
        await _respond(scope, send, status, wire.dumps(answer), [*headers, *(extra or [])])

    async def _body(self, scope: Scope, receive: Receive, *, empty_ok: bool = False) -> Any:
        body = await self.gateway._read_body(scope, receive)
        if isinstance(body, Failure):
            raise _Refused(body)
        if not body.strip() and empty_ok:
            return {}
        try:
            return wire.parse_json(body, self.gateway.settings.max_json_depth)
        except wire.BadRequest as exc:
            raise BadInput(exc.message, exc.param) from None

    @property
    def _store(self) -> Any:
        store = self.gateway.runtime.store
        if store is None:
            raise _Refused(_failure(503, "the key store is not open yet", "not_ready"))
        return store

    def _config_names(self) -> list[str]:
        return [k.name for k in self.gateway.settings.key_list()]

    async def _changed(self) -> None:
        """Take this worker's own change in now (the others poll)."""
        try:
            await self.gateway.runtime.refresh()
        except ConfigError as exc:  # a reload another admin asked for failed: reported there
            log.warning("gateway.admin.refresh_failed", error=str(exc)[:300])

    # ------------------------------------------------------------------ keys

    def _name(self, scope: Scope) -> str:
        name = unquote(scope["path"].split("/")[3])
        if len(name) > _MAX_NAME:
            raise BadInput(f"a key name has at most {_MAX_NAME} characters", "name")
        return name

    async def list_keys(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        now = time.time()
        used = await self._last_used()
        spend = await asyncio.to_thread(self._spend_by_key, now)
        records = self.gateway.runtime.records
        data = keyrows.key_rows(
            self.gateway.settings.key_list(), records, now, used=used, spend=spend
        )
        return 200, {"object": "list", "data": data}

    async def show_key(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        name = self._name(scope)
        row = await asyncio.to_thread(self._describe, name, time.time())
        row["last_used"] = (await self._last_used()).get(name)
        return 200, row

    def _describe(self, name: str, now: float) -> dict[str, Any]:
        spend = self._spend_by_key(now, name)
        config_keys = self.gateway.settings.key_list()
        records = self.gateway.runtime.records
        rows = keyrows.key_rows(config_keys, records, now, used={}, spend=spend, only=name)
        if not rows:
            raise Missing(f"no key named {name!r}")
        return rows[0]

    async def _last_used(self) -> dict[str, float]:
        runtime = self.gateway.runtime
        try:
            stored: dict[str, float] = await self._store.last_used()
        except _Refused:
            stored = {}
        for name, at in runtime.used.items():
            stored[name] = max(at, stored.get(name, 0.0))
        return stored

    async def create_key(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        data = await self._body(scope, receive)
        record, secret = await keyops.create(
            self._store, data, actor=key.name, config_names=self._config_names()
        )
        await self._changed()
        return 201, {**self._record_json(record), "key": secret}

    async def update_key(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        name = self._name(scope)
        data = await self._body(scope, receive)
        record = await keyops.update(
            self._store, name, data, actor=key.name, config_names=self._config_names()
        )
        await self._changed()
        return 200, self._record_json(record)

    async def rotate_key(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        name = self._name(scope)
        data = await self._body(scope, receive, empty_ok=True)
        unknown = sorted(set(data) - {"grace"})
        if unknown:
            raise BadInput(f"unknown field {unknown[0]!r}; a rotation takes: grace", unknown[0])
        record, secret = await keyops.rotate(
            self._store,
            name,
            grace=data.get("grace"),
            actor=key.name,
            config_names=self._config_names(),
        )
        await self._changed()
        return 200, {**self._record_json(record), "key": secret}

    async def revoke_key(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        name = self._name(scope)
        await keyops.revoke(self._store, name, actor=key.name, config_names=self._config_names())
        await self._changed()
        return 200, {"name": name, "revoked": True}

    def _record_json(self, record: KeyRecord) -> dict[str, Any]:
        return record.public(time.time())

    # ------------------------------------------------------------------ spend

    def _ledger(self) -> Any:
        return keyrows.ledger_of(self.gateway.kernel)

    def _spend_by_key(self, now: float, name: str | None = None) -> dict[str, dict[str, Any]]:
        return keyrows.spend_by_key(self._ledger(), now, name)

    async def spend(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        by = (query.get("by") or ["key"])[0]
        if by not in SPEND_GROUPS:
            raise BadInput(f"by must be one of {', '.join(SPEND_GROUPS)}, not {by!r}", "by")
        since = _query_time(query, "since")
        until = _query_time(query, "until")
        ledger = self._ledger()
        if ledger is None:
            raise _Refused(
                _failure(
                    409,
                    "spend is read from the ledger, which is not enabled in this gateway "
                    "([plugin.ledger])",
                    "ledger_disabled",
                )
            )
        rows = await asyncio.to_thread(ledger.store.summary, by, since=since, until=until)
        data = [
            {
                by: row[by],
                "requests": row["requests"],
                "errors": row["errors"],
                "unpriced": row["unpriced"],
                "input_tokens": row["input_tokens"],
                "output_tokens": row["output_tokens"],
                "cost": keyrows.money(row["cost"]),
            }
            for row in rows
        ]
        total = sum((row["cost"] for row in rows), Decimal(0))
        return 200, {
            "object": "list",
            "by": by,
            "since": since,
            "until": until,
            "total_cost": keyrows.money(total),
            "data": data,
        }

    # ------------------------------------------------------------------ reload

    async def reload(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        await self._body(scope, receive, empty_ok=True)
        runtime = self.gateway.runtime
        try:
            entry = await runtime.reload("admin", broadcast=True, actor=key.name)
        except ConfigError as exc:
            store = self.gateway.runtime.store
            if store is not None:
                await store.record_audit(
                    actor=key.name,
                    action="config.reload_refused",
                    target="",
                    details={"error": str(exc)[:1000]},
                )
            raise _Refused(_failure(400, str(exc), "config_invalid")) from None
        return 200, {"reloaded": True, "generation": runtime.generation, **entry}

    # ------------------------------------------------------------------ deployments

    async def deployments(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        table = self.gateway.runtime.overrides.table
        data = [{"deployment": name, **settings} for name, settings in sorted(table.items())]
        return 200, {"object": "list", "data": data}

    async def update_deployment(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        name = unquote(scope["path"][len("/admin/deployments/") :])
        self._check_deployment(name)
        data = await self._body(scope, receive)
        overrides = self.gateway.runtime.overrides
        current = overrides.table.get(name, {})
        settings = parse_override(data, current)
        if "weight" in settings:
            from llmkernel_gateway.deployments import configured_weight

            if configured_weight(self.gateway.config, name):
                raise BadInput(
                    f"[routing.weighted] weights in {self.gateway.config.source} sets "
                    f"{name!r}'s weight: change it there",
                    "weight",
                )
        if not current and len(overrides.table) >= MAX_OVERRIDES:
            raise BadInput(f"at most {MAX_OVERRIDES} deployments may have live settings")
        await self._store.set_deployment(name, settings, actor=key.name, details=dict(data))
        await self._changed()
        return 200, {"deployment": name, **overrides.of(name)}

    def _check_deployment(self, name: str) -> None:
        provider, _, model = name.partition("/")
        if len(name) > _MAX_NAME or not model:
            raise BadInput("the deployment is named provider/model", "deployment")
        providers = self.gateway.config.providers
        if provider not in providers:
            raise Missing(
                f"no provider {provider!r} in the config; configured: "
                f"{', '.join(sorted(providers)) or 'none'}"
            )

    # ------------------------------------------------------------------ audit

    async def audit(self, scope: Scope, receive: Receive, key: Key) -> tuple[int, Any]:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        text = (query.get("limit") or ["100"])[0]
        if not text.isdigit() or not 1 <= int(text) <= 1000:
            raise BadInput("limit must be a whole number from 1 to 1000", "limit")
        return 200, {"object": "list", "data": await self._store.audit(int(text))}


class _Refused(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _query_time(query: Mapping[str, list[str]], name: str) -> float | None:
    values = query.get(name)
    if not values:
        return None
    text = values[0]
    try:
        return parse_time(float(text), name)
    except ValueError:
        return parse_time(text, name)
