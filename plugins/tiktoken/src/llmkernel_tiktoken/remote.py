"""The providers' own counting endpoints: exact, but network calls, so opt-in.

- Anthropic: ``POST /v1/messages/count_tokens`` with the Messages API's ``model``,
  ``messages``, ``system`` and ``tools``; answers ``{"input_tokens": N}``.
- Gemini: ``POST /v1beta/models/{model}:countTokens`` with a
  ``generateContentRequest`` (contents, system instruction, function
  declarations); answers ``{"totalTokens": N}``.

The API key travels in a header only; it never appears in errors or logs.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from llmkernel.types import ChatRequest, ImagePart, ReasoningPart, TextPart, TokenCount
from llmkernel_http import error_for_status

__all__ = ["anthropic_body", "count_anthropic", "count_gemini", "gemini_body"]

ANTHROPIC_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
GEMINI_URL = "https://generativelanguage.googleapis.com"


def _anthropic_content(request: ChatRequest, index: int) -> list[dict[str, Any]]:
    message = request.messages[index]
    blocks: list[dict[str, Any]] = []
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text}
        ]
    for part in message.content:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            source = (
                {"type": "base64", "media_type": part.media_type, "data": part.data}
                if part.data is not None
                else {"type": "url", "url": part.url}
            )
            blocks.append({"type": "image", "source": source})
        elif isinstance(part, ReasoningPart) and part.signature:
            blocks.append({"type": "thinking", "thinking": part.text, "signature": part.signature})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
        )
    return blocks


def anthropic_body(request: ChatRequest, model: str) -> dict[str, Any]:
    system = "\n\n".join(m.text for m in request.messages if m.role == "system")
    messages = [
        {
            "role": "assistant" if m.role == "assistant" else "user",
            "content": _anthropic_content(request, i),
        }
        for i, m in enumerate(request.messages)
        if m.role != "system"
    ]
    body: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in request.tools
        ]
    return body


def gemini_body(request: ChatRequest, model: str) -> dict[str, Any]:
    contents = []
    for m in request.messages:
        if m.role == "system":
            continue
        parts: list[dict[str, Any]] = []
        for part in m.content:
            if isinstance(part, TextPart):
                parts.append({"text": part.text})
            elif isinstance(part, ImagePart) and part.data is not None:
                parts.append({"inlineData": {"mimeType": part.media_type, "data": part.data}})
            elif isinstance(part, ImagePart):
                parts.append({"fileData": {"fileUri": part.url}})
        for call in m.tool_calls:
            parts.append({"functionCall": {"name": call.name, "args": dict(call.arguments)}})
        if m.role == "tool":
            parts = [
                {"functionResponse": {"name": m.name or "tool", "response": {"result": m.text}}}
            ]
        contents.append({"role": "model" if m.role == "assistant" else "user", "parts": parts})
    inner: dict[str, Any] = {"model": f"models/{model}", "contents": contents}
    system = "\n\n".join(m.text for m in request.messages if m.role == "system")
    if system:
        inner["systemInstruction"] = {"parts": [{"text": system}]}
    if request.tools:
        inner["tools"] = [
            {
                "functionDeclarations": [
                    {"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
                    for t in request.tools
                ]
            }
        ]
    return {"generateContentRequest": inner}


async def _post(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    provider: str,
    model: str,
    client: httpx.AsyncClient | None,
) -> Any:
    own = client is None
    http = client or httpx.AsyncClient(timeout=30)
    try:
        response = await http.post(url, content=json.dumps(body), headers=headers)
    except httpx.HTTPError as exc:
        from llmkernel_http import error_for_transport

        raise error_for_transport(exc, provider=provider, model=model) from exc
    finally:
        if own:
            await http.aclose()
    if response.status_code != 200:
        try:
            message = str(response.json().get("error", {}).get("message", ""))
        except (ValueError, AttributeError):
            message = response.text[:200]
        raise error_for_status(response.status_code, message, provider=provider, model=model)
    return response.json()


async def count_anthropic(
    request: ChatRequest,
    *,
    model: str,
    api_key: str,
    base_url: str = ANTHROPIC_URL,
    client: httpx.AsyncClient | None = None,
) -> TokenCount:
    """Anthropic's exact count for ``request`` on ``model``."""
    data = await _post(
        base_url.rstrip("/") + "/v1/messages/count_tokens",
        anthropic_body(request, model),
        {
            "x-api-key": api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
        },
        "anthropic",
        model,
        client,
    )
    return TokenCount(
        tokens=int(data["input_tokens"]), exact=True, method="Anthropic count_tokens endpoint"
    )


async def count_gemini(
    request: ChatRequest,
    *,
    model: str,
    api_key: str,
    base_url: str = GEMINI_URL,
    client: httpx.AsyncClient | None = None,
) -> TokenCount:
    """Gemini's exact count for ``request`` on ``model``."""
    data = await _post(
        f"{base_url.rstrip('/')}/v1beta/models/{model}:countTokens",
        gemini_body(request, model),
        {"x-goog-api-key": api_key, "content-type": "application/json"},
        "gemini",
        model,
        client,
    )
    return TokenCount(
        tokens=int(data.get("totalTokens", 0)), exact=True, method="Gemini countTokens endpoint"
    )
