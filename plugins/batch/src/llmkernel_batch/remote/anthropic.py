"""Anthropic Message Batches: ``POST /v1/messages/batches`` with ``{"requests":
[{"custom_id", "params"}]}``, poll ``GET /v1/messages/batches/{id}``
(``processing_status`` ``in_progress``, ``canceling``, ``ended``), read the JSONL at
``results_url`` (each line ``{"custom_id", "result": {"type": "succeeded" |
"errored" | "canceled" | "expired", ...}}``), cancel ``POST
/v1/messages/batches/{id}/cancel``. Headers ``x-api-key`` and ``anthropic-version``.
From Anthropic's API reference (docs.anthropic.com/en/api/creating-message-batches
and batch-processing guide, checked 2026-11-30). ``custom_id`` must match
``^[a-zA-Z0-9_-]{1,64}$``.

Each request's ``params`` is the body the anthropic plugin sends to ``POST
/v1/messages`` (its ``chat_body``, with the instance's settings: ``max_tokens``
``default_max_tokens`` when a line has none, prompt caching, structured output,
thinking), so a line is sent as the same line would be as a chat call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmkernel.types import Usage
from llmkernel_batch.remote.base import (
    Endpoint,
    Http,
    Parsed,
    RemoteError,
    Status,
    jsonl,
    request_body,
    settings_for,
)

if TYPE_CHECKING:
    import httpx

    from llmkernel.types import ChatRequest
    from llmkernel_batch.items import BatchItem
    from llmkernel_batch.store import BatchJob

__all__ = ["AnthropicBatches"]

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
           "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop"}  # fmt: skip
_ERRORS = {"invalid_request_error": "invalid_request", "authentication_error": "authentication",
           "permission_error": "permission", "not_found_error": "not_found",
           "rate_limit_error": "rate_limit", "api_error": "server",
           "overloaded_error": "overloaded", "request_too_large": "invalid_request"}  # fmt: skip


class AnthropicBatches:
    def __init__(self, where: Endpoint, client: httpx.AsyncClient | None = None) -> None:
        from llmkernel_anthropic.settings import AnthropicSettings

        self.settings = settings_for(where, AnthropicSettings)
        headers = {
            "anthropic-version": self.settings.api_version,
            "content-type": "application/json",
        }
        if self.settings.beta:
            headers["anthropic-beta"] = ",".join(self.settings.beta)
        if where.api_key:
            headers["x-api-key"] = where.api_key
        self.http = Http(self.settings.api_root, headers, client)

    async def submit(self, items: Sequence[BatchItem], model: str) -> tuple[str, Status, Any]:
        for item in items:
            if not CUSTOM_ID.match(item.custom_id):
                raise RemoteError(
                    f"line {item.line}: custom_id {item.custom_id!r} is not allowed by Anthropic "
                    "(1-64 letters, digits, '-' or '_')"
                )
        from llmkernel_anthropic.convert import chat_body

        def params(request: ChatRequest) -> dict[str, Any]:
            return chat_body(request, self.settings, stream=False)

        requests = [
            {"custom_id": item.custom_id, "params": request_body(item, model, params)}
            for item in items
        ]
        batch = await self.http.json("POST", "/v1/messages/batches", json={"requests": requests})
        return str(batch["id"]), _status(batch), batch

    async def poll(self, job: BatchJob) -> tuple[Status, Any]:
        batch = await self.http.json("GET", f"/v1/messages/batches/{job.id}")
        return _status(batch), batch

    async def cancel(self, job: BatchJob) -> tuple[Status, Any]:
        batch = await self.http.json("POST", f"/v1/messages/batches/{job.id}/cancel")
        return _status(batch), batch

    async def results(self, job: BatchJob, info: Any) -> list[Parsed]:
        url = info.get("results_url") if isinstance(info, Mapping) else None
        response = await self.http.request(
            "GET", str(url or f"/v1/messages/batches/{job.id}/results")
        )
        return [_line(line) for line in jsonl(response.text) if isinstance(line, Mapping)]

    async def aclose(self) -> None:
        await self.http.aclose()


def _status(batch: Any) -> Status:
    raw = batch.get("processing_status") if isinstance(batch, Mapping) else None
    if raw == "in_progress":
        return "in_progress"
    if raw == "canceling":
        return "cancelling"
    if raw == "ended":
        return "cancelled" if batch.get("cancel_initiated_at") else "completed"
    raise RemoteError(f"unknown Anthropic batch processing_status {raw!r}")


def _line(line: Mapping[str, Any]) -> Parsed:
    custom_id = str(line.get("custom_id", ""))
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        return parse_message(custom_id, result.get("message") or {})
    if kind == "errored":
        error = result.get("error") or {}
        nested = error.get("error")
        inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else error
        return Parsed(
            custom_id=custom_id,
            ok=False,
            error_kind=_ERRORS.get(str(inner.get("type")), "provider"),
            error_message=str(inner.get("message") or inner.get("type") or "errored"),
        )
    if kind in ("canceled", "expired"):
        return Parsed(
            custom_id=custom_id,
            ok=False,
            error_kind="cancelled" if kind == "canceled" else "expired",
            error_message=f"the request was {kind} before it ran",
        )
    return Parsed(
        custom_id=custom_id, ok=False, error_kind="provider", error_message=f"result {kind!r}"
    )


def parse_message(custom_id: str, message: Mapping[str, Any]) -> Parsed:
    texts: list[str] = []
    calls = []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append(
                {"id": block.get("id"), "name": block.get("name"), "arguments": block.get("input")}
            )
    usage = message.get("usage") or {}
    read = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    return Parsed(
        custom_id=custom_id,
        ok=True,
        text="".join(texts),
        tool_calls=calls,
        finish_reason=_FINISH.get(str(message.get("stop_reason")), "stop"),
        usage=Usage(
            input_tokens=int(usage.get("input_tokens") or 0) + read + written,
            output_tokens=int(usage.get("output_tokens") or 0),
            cached_input_tokens=read,
            cache_write_tokens=written,
        ),
        id=message.get("id"),
        model=str(message.get("model") or ""),
    )
