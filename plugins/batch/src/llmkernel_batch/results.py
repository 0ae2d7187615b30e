"""One answered request of a batch, as a value and as an output line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import attrs

__all__ = ["BatchResult", "error_kind", "response_data"]

Status = Literal["ok", "error", "skipped"]


@attrs.frozen(kw_only=True)
class BatchResult:
    """How one request ended. ``status`` ``"ok"`` carries ``response`` (plain JSON
    types: text, tool calls, finish reason, usage, cost as a string, provider,
    model, latency); ``"error"`` carries ``error_kind`` and ``error_message``.
    ``cost`` is the exact ``Decimal`` (``None`` when unpriced or failed)."""

    custom_id: str
    status: Status
    response: Mapping[str, Any] | None = None
    error_kind: str | None = None
    error_message: str | None = None
    cost: Decimal | None = None
    tokens: int = 0
    line: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"custom_id": self.custom_id, "status": self.status}
        if self.response is not None:
            data["response"] = dict(self.response)
        if self.status != "ok":
            data["error"] = {"kind": self.error_kind, "message": self.error_message}
        return data

    def to_line(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchResult:
        response = data.get("response")
        error = data.get("error") or {}
        cost = None
        if isinstance(response, Mapping) and response.get("cost") is not None:
            cost = Decimal(str(response["cost"]))
        usage = response.get("usage", {}) if isinstance(response, Mapping) else {}
        return cls(
            custom_id=str(data["custom_id"]),
            status=data["status"] if data.get("status") in ("ok", "skipped") else "error",
            response=response if isinstance(response, Mapping) else None,
            error_kind=error.get("kind"),
            error_message=error.get("message"),
            cost=cost,
            tokens=int(usage.get("total_tokens", 0) or 0),
        )

    @classmethod
    def failed(cls, custom_id: str, error: BaseException, *, line: int = 0) -> BatchResult:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        return cls(
            custom_id=custom_id,
            status="error",
            error_kind=error_kind(error),
            error_message=message,
            line=line,
        )


def error_kind(error: BaseException) -> str:
    """The normalized kind of an error (``rate_limit``, ``server``, ``budget``...);
    for "every candidate failed", the kind of the last failure."""
    errors = getattr(error, "errors", None)
    if errors:
        last = list(errors)[-1]
        last = last[-1] if isinstance(last, tuple) else last
        if isinstance(last, BaseException):
            return error_kind(last)
    kind = getattr(error, "kind", None)
    if isinstance(kind, str):
        return kind
    from llmkernel.errors import NoProviderError

    return "no_provider" if isinstance(error, NoProviderError) else type(error).__name__


def response_data(
    response: Any, *, cost: Decimal | None = None, batch_price: bool = False
) -> dict[str, Any]:
    """A :class:`~llmkernel.types.Response` as the output line's ``response``."""
    usage = response.usage
    price = response.cost if cost is None else cost
    data = {
        "id": response.id,
        "provider": response.provider,
        "model": response.model,
        "text": response.text,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": dict(c.arguments)}
            for c in response.tool_calls
        ],
        "finish_reason": response.finish_reason,
        "usage": usage.as_dict(total=True),
        "cost": None if price is None else format(price, "f"),
        "latency": round(float(response.latency or 0.0), 6),
        "attempts": response.attempts,
    }
    if batch_price:
        data["batch_price"] = True
    return data
