"""Anthropic Message Batches: ``POST /v1/messages/batches`` with ``{"requests":
[{"custom_id", "params"}]}``, poll ``GET /v1/messages/batches/{id}``
(``processing_status`` ``in_progress``, ``canceling``, ``ended``), read the JSONL at
``results_url`` (each line ``{"custom_id", "result": {"type": "succeeded" |
"errored" | "canceled" | "expired", ...}}``), cancel ``POST
/v1/messages/batches/{id}/cancel``. Headers ``x-api-key`` and ``anthropic-version``.
From Anthropic's API reference (docs.anthropic.com/en/api/creating-message-batches
and batch-processing guide, checked 2026-11-30). ``custom_id`` must match
``^[a-zA-Z0-9_-]{1,64}$``; ``max_tokens`` is required (4096 when a line has none).

Lines come in OpenAI's chat shape and are converted here: system and developer
messages to ``system``, text and image parts, assistant tool calls to ``tool_use``,
tool messages to ``tool_result``, tools, tool choice and stop sequences.
"""

from __future__ import annotations

import json
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
    content_text,
    jsonl,
)

if TYPE_CHECKING:
    import httpx

    from llmkernel_batch.items import BatchItem
    from llmkernel_batch.store import BatchJob

__all__ = ["AnthropicBatches", "params_from"]

DEFAULT_MAX_TOKENS = 4096
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
           "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop"}  # fmt: skip
_ERRORS = {"invalid_request_error": "invalid_request", "authentication_error": "authentication",
           "permission_error": "permission", "not_found_error": "not_found",
           "rate_limit_error": "rate_limit", "api_error": "server",
           "overloaded_error": "overloaded", "request_too_large": "invalid_request"}  # fmt: skip


class AnthropicBatches:
    def __init__(self, where: Endpoint, client: httpx.AsyncClient | None = None) -> None:
        headers = {
            "anthropic-version": str(where.options.get("api_version") or "2023-06-01"),
            "content-type": "application/json",
        }
        if where.api_key:
            headers["x-api-key"] = where.api_key
        self.http = Http(where.base_url, headers, client)

    async def submit(self, items: Sequence[BatchItem], model: str) -> tuple[str, Status, Any]:
        for item in items:
            if not CUSTOM_ID.match(item.custom_id):
                raise RemoteError(
                    f"line {item.line}: custom_id {item.custom_id!r} is not allowed by Anthropic "
                    "(1-64 letters, digits, '-' or '_')"
                )
        requests = [
            {"custom_id": item.custom_id, "params": params_from(item.body, model)} for item in items
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


def params_from(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """Messages API parameters from an OpenAI-shaped chat body."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for message in body.get("messages") or []:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(content_text(content))
        elif role == "tool":
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message.get("tool_call_id"),
                        "content": content_text(content),
                    }
                ],
            )
        elif role == "assistant":
            blocks = _blocks(content)
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "input": arguments,
                    }
                )
            add("assistant", blocks)
        else:
            add("user", _blocks(content))
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": int(body.get("max_tokens") or DEFAULT_MAX_TOKENS),
        "messages": messages,
    }
    if system:
        params["system"] = "\n\n".join(s for s in system if s)
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            params[key] = body[key]
    stop = body.get("stop")
    if stop:
        params["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        params["tools"] = [
            {
                "name": (t.get("function") or t).get("name"),
                "description": (t.get("function") or t).get("description", ""),
                "input_schema": (t.get("function") or t).get("parameters")
                or {"type": "object", "properties": {}},
            }
            for t in tools
        ]
    choice = body.get("tool_choice")
    if choice == "required":
        params["tool_choice"] = {"type": "any"}
    elif choice in ("auto", "none"):
        params["tool_choice"] = {"type": choice}
    elif isinstance(choice, Mapping) and (choice.get("function") or {}).get("name"):
        params["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    return params


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                source = {"type": "base64", "media_type": media, "data": data}
            else:
                source = {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
    return blocks
