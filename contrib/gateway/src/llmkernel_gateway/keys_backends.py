"""Where a ``llmkernel gateway-keys`` action runs: :class:`Local` (the key store the
config's gateway uses, through :mod:`llmkernel_gateway.keyops`, audited as
``cli:<user>``) or :class:`Remote` (a running gateway's admin API). Both answer in
the admin API's JSON shapes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_gateway.keystore import KeyStore

__all__ = ["ApiError", "Backend", "Local", "Remote", "flagged"]

#: the admin API's field names as this command's options (in error messages)
_FLAGS = {
    "name": "NAME",
    "models": "--model",
    "tenant": "--tenant",
    "metadata": "--metadata",
    "expires_at": "--expires",
    "expires_in": "--expires",
    "budget.day": "--budget-day",
    "budget.month": "--budget-month",
    "budget.total": "--budget-total",
    "rate_limit.requests_per_minute": "--rpm",
    "rate_limit.tokens_per_minute": "--tpm",
    "grace": "--grace",
}


class ApiError(Exception):
    """A running gateway refused an admin request (or could not be reached)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def flagged(message: str, param: str | None) -> str:
    """``message`` with the option ``param`` (an admin API field) is given by."""
    flag = _FLAGS.get(param or "") or _FLAGS.get((param or "").split(".")[0])
    return f"{flag}: {message}" if flag else message


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()[:64]}"  # the audit trail's actor
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}" if hasattr(os, "getuid") else "cli"


class Local:
    """The key store the gateway of ``kernel``'s config uses."""

    def __init__(self, kernel: Kernel) -> None:
        from llmkernel_gateway.keystore import open_store
        from llmkernel_gateway.settings import load_settings

        self.kernel = kernel
        self.settings = load_settings(kernel.config)
        self.store: KeyStore = open_store(self.settings, kernel.config)
        self.where = f"the key store ({self.store.where})"
        self.actor = _actor()

    def _config_names(self) -> list[str]:
        return [k.name for k in self.settings.key_list()]

    async def _rows(self, only: str | None = None) -> list[dict[str, Any]]:
        from llmkernel_gateway import keyrows

        now = time.time()
        snapshot = await self.store.snapshot()
        used = await self.store.last_used()
        ledger = keyrows.ledger_of(self.kernel)
        spend = await asyncio.to_thread(keyrows.spend_by_key, ledger, now, only)
        return keyrows.key_rows(
            self.settings.key_list(), snapshot.records, now, used=used, spend=spend, only=only
        )

    async def list(self) -> list[dict[str, Any]]:
        return await self._rows()

    async def show(self, name: str) -> dict[str, Any]:
        from llmkernel_gateway.keystore import Missing

        rows = await self._rows(name)
        if not rows:
            raise Missing(f"no key named {name!r} in the config file or {self.where}")
        return rows[0]

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        from llmkernel_gateway import keyops

        record, secret = await keyops.create(
            self.store, body, actor=self.actor, config_names=self._config_names()
        )
        return {**record.public(time.time()), "key": secret}

    async def update(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        from llmkernel_gateway import keyops

        await keyops.update(
            self.store, name, body, actor=self.actor, config_names=self._config_names()
        )
        return await self.show(name)

    async def rotate(self, name: str, grace: float | None) -> dict[str, Any]:
        from llmkernel_gateway import keyops

        record, secret = await keyops.rotate(
            self.store, name, grace=grace, actor=self.actor, config_names=self._config_names()
        )
        return {**record.public(time.time()), "key": secret}

    async def revoke(self, name: str) -> dict[str, Any]:
        from llmkernel_gateway import keyops

        await keyops.revoke(self.store, name, actor=self.actor, config_names=self._config_names())
        return {"name": name, "revoked": True}

    async def aclose(self) -> None:
        await self.store.aclose()


class Remote:
    """A running gateway's admin API at ``url``."""

    def __init__(self, url: str, admin_key: str, *, timeout: float = 30.0) -> None:
        import httpx

        from llmkernel_gateway.records import BadInput

        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise BadInput(f"--url must be http://host:port or https://..., not {url!r}")
        self.url = url
        self.where = f"the gateway at {url}"
        self.client = httpx.AsyncClient(
            base_url=url, headers={"authorization": f"Bearer {admin_key}"}, timeout=timeout
        )

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            response = await self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ApiError(
                f"cannot reach {self.where}: {type(exc).__name__}: {exc}"[:500]
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            raise ApiError(
                _api_message(self.where, response.status_code, data, response.text),
                status=response.status_code,
            )
        if data is None:
            raise ApiError(
                f"{self.where} answered {method} {path} with something that is not JSON "
                f"(status {response.status_code})"
            )
        return data

    @staticmethod
    def _key(name: str, suffix: str = "") -> str:
        return f"/admin/keys/{quote(name, safe='')}{suffix}"

    async def list(self) -> list[dict[str, Any]]:
        answer = await self._call("GET", "/admin/keys")
        return list(answer.get("data", []))

    async def show(self, name: str) -> dict[str, Any]:
        return dict(await self._call("GET", self._key(name)))

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(await self._call("POST", "/admin/keys", dict(body)))

    async def update(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        await self._call("PATCH", self._key(name), dict(body))
        return await self.show(name)

    async def rotate(self, name: str, grace: float | None) -> dict[str, Any]:
        body = {} if grace is None else {"grace": grace}
        return dict(await self._call("POST", self._key(name, "/rotate"), body))

    async def revoke(self, name: str) -> dict[str, Any]:
        return dict(await self._call("DELETE", self._key(name)))

    async def aclose(self) -> None:
        await self.client.aclose()


def _api_message(where: str, status: int, data: Any, text: str) -> str:
    error = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(error, Mapping) and error.get("message"):
        message = flagged(str(error["message"]), error.get("param"))
        code = f", {error['code']}" if error.get("code") else ""
        return f"{where} answered {status}{code}: {message}"[:1000]
    snippet = " ".join(text.split())[:200]
    return f"{where} answered {status}" + (f": {snippet}" if snippet else "")


Backend = Local | Remote
