"""Prompt caching: ``cache_control`` breakpoints on system, message and tool blocks,
and cache reads and writes (1-hour ones apart) in the usage.

Wire format from Anthropic's prompt-caching reference (docs.anthropic.com, "Prompt
caching", read 2026-11): ``"cache_control": {"type": "ephemeral"}`` (5 minutes) or
``{"type": "ephemeral", "ttl": "1h"}`` on a system text block, a message content
block or a tool; the usage reports ``cache_creation_input_tokens``,
``cache_read_input_tokens`` and ``cache_creation: {ephemeral_5m_input_tokens,
ephemeral_1h_input_tokens}``.
"""

from __future__ import annotations

from typing import Any

import attrs
from anthropic_wire import (
    Route,
    block_start,
    block_stop,
    make_provider,
    message_delta,
    message_response,
    message_start,
    message_stop,
    sse_response,
    text_delta,
)

from llmkernel.types import ChatRequest, Message, TextPart, Tool, Usage
from llmkernel_anthropic.convert import cache_control_of

MODEL = "claude-sonnet-4-5-20250929"
LONG_PROMPT = "You are a careful assistant. " * 200

USAGE_WITH_CACHE = {
    "input_tokens": 20,
    "cache_creation_input_tokens": 1500,
    "cache_read_input_tokens": 3000,
    "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
    "output_tokens": 7,
}
EXPECTED_USAGE = Usage(
    input_tokens=20 + 1500 + 3000,
    output_tokens=7,
    cached_input_tokens=3000,
    cache_write_tokens=1500,
    cache_write_1h_tokens=1000,
)


def ask(*messages: Message, **kwargs: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=messages, **kwargs)


def ok() -> Any:
    return message_response([{"type": "text", "text": "fine"}], usage=USAGE_WITH_CACHE)


async def test_cache_system_setting_marks_the_last_system_block(route: Route, api_key: str) -> None:
    route.expect("POST", "/v1/messages", ok())
    provider = make_provider(route.base_url, cache_system="1h")
    try:
        response = await provider.chat(ask(Message.system(LONG_PROMPT), Message.user("hi")))
    finally:
        await provider.aclose()
    body = route.body()
    assert body["system"] == [
        {"type": "text", "text": LONG_PROMPT, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    assert response.usage == EXPECTED_USAGE


async def test_cache_tools_setting_marks_the_last_tool(route: Route, api_key: str) -> None:
    route.expect("POST", "/v1/messages", ok())
    provider = make_provider(route.base_url, cache_tools="5m")
    tools = (Tool(name="first"), Tool(name="second"))
    try:
        await provider.chat(ask(Message.user("hi"), tools=tools))
    finally:
        await provider.aclose()
    sent = route.body()["tools"]
    assert "cache_control" not in sent[0]
    assert sent[1]["cache_control"] == {"type": "ephemeral"}


async def test_without_cache_marks_the_system_prompt_stays_a_string(
    route: Route, api_key: str
) -> None:
    route.expect("POST", "/v1/messages", ok())
    provider = make_provider(route.base_url)
    try:
        await provider.chat(ask(Message.system("Be brief."), Message.user("hi")))
    finally:
        await provider.aclose()
    body = route.body()
    assert body["system"] == "Be brief."
    assert "cache_control" not in str(body)


# The kernel's parts and tools carry ``cache_control`` once core's types have the
# field (issue 8); until then these stand-ins add it the same way.
@attrs.frozen(kw_only=True)
class CachedText(TextPart):
    cache_control: dict[str, str] | None = None


@attrs.frozen(kw_only=True)
class CachedTool(Tool):
    cache_control: dict[str, str] | None = None


async def test_cache_control_on_parts_and_tools_is_passed_through(
    route: Route, api_key: str
) -> None:
    route.expect("POST", "/v1/messages", ok())
    provider = make_provider(route.base_url)
    mark = {"type": "ephemeral", "ttl": "1h"}
    system = Message(role="system", content=(CachedText(text=LONG_PROMPT, cache_control=mark),))
    user = Message(
        role="user",
        content=(
            CachedText(text="the document", cache_control={"type": "ephemeral"}),
            TextPart(text="the question"),
        ),
    )
    tool = CachedTool(name="lookup", cache_control=mark)
    try:
        response = await provider.chat(ask(system, user, tools=(tool,)))
    finally:
        await provider.aclose()
    body = route.body()
    assert body["system"] == [{"type": "text", "text": LONG_PROMPT, "cache_control": mark}]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "the document", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "the question"},
    ]
    assert body["tools"][0]["cache_control"] == mark
    assert response.usage.cache_write_1h_tokens == 1000


def test_cache_control_of_reads_only_mappings() -> None:
    assert cache_control_of(TextPart(text="x")) is None
    assert cache_control_of(CachedText(text="x", cache_control={"type": "ephemeral"})) == {
        "type": "ephemeral"
    }


async def test_stream_usage_splits_cache_reads_and_writes(route: Route, api_key: str) -> None:
    start_usage = {**USAGE_WITH_CACHE, "output_tokens": 1}
    route.expect(
        "POST",
        "/v1/messages",
        sse_response(
            [
                message_start(start_usage),
                block_start(0, {"type": "text", "text": ""}),
                text_delta(0, "fine"),
                block_stop(0),
                message_delta("end_turn", {"output_tokens": 7}),
                message_stop(),
            ]
        ),
    )
    provider = make_provider(route.base_url, cache_system="5m")
    try:
        events = [e async for e in provider.stream(ask(Message.system("s"), Message.user("hi")))]
    finally:
        await provider.aclose()
    usage = [e.usage for e in events if e.type == "usage"]
    assert usage == [EXPECTED_USAGE]
    assert route.body()["system"][0]["cache_control"] == {"type": "ephemeral"}
