"""The pieces behind the Responses and Messages routes, without a server: the
response store (a real SQLite file), session affinity, provider-only fields and
the translation of input items."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from llmkernel.types import ImagePart, Message, ReasoningPart, TextPart, ToolCall
from llmkernel_gateway import affinity, messages, responses
from llmkernel_gateway.extras import Extra, options_for
from llmkernel_gateway.store import SQLiteResponseStore, StoredResponse
from llmkernel_gateway.wire import BadRequest

CONVERSATION = (
    Message(role="system", content=(TextPart(text="sys", cache_control={"type": "ephemeral"}),)),
    Message(
        role="user", content=(TextPart(text="look"), ImagePart(data="AAAA", media_type="image/png"))
    ),
    Message(
        role="assistant",
        content=(ReasoningPart(text="hm", signature="sig"), ReasoningPart(redacted="xyz")),
        tool_calls=(ToolCall(id="c1", name="f", arguments={"a": [1, 2]}, signature="ts"),),
    ),
    Message(role="tool", tool_call_id="c1", content=(TextPart(text="done"),)),
)


def record(rid: str, tenant: str, *, ttl: float = 60.0) -> StoredResponse:
    now = time.time()
    return StoredResponse(
        id=rid,
        tenant=tenant,
        created_at=now,
        expires_at=now + ttl,
        response={"id": rid, "object": "response"},
        conversation=CONVERSATION,
    )


async def test_the_store_keeps_every_part_per_tenant_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "responses.db"
    store = SQLiteResponseStore(path)
    await store.put(record("resp_1", "a"))
    got = await store.get("a", "resp_1")
    assert got is not None and got.conversation == CONVERSATION
    assert got.response == {"id": "resp_1", "object": "response"}
    assert await store.get("b", "resp_1") is None  # another tenant's
    assert not await store.delete("b", "resp_1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # a second store on the same file (another worker) sees it, and deletes it
    other = SQLiteResponseStore(path)
    assert await other.get("a", "resp_1") is not None
    assert await other.delete("a", "resp_1")
    assert await store.get("a", "resp_1") is None
    await store.aclose()
    await other.aclose()


async def test_an_expired_response_is_gone(tmp_path: Path) -> None:
    store = SQLiteResponseStore(tmp_path / "r.db")
    await store.put(record("resp_old", "a", ttl=-1.0))
    assert await store.get("a", "resp_old") is None
    assert not await store.delete("a", "resp_old")
    await store.aclose()


def test_sessions_are_bounded_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = affinity.Sessions(max_sessions=2, ttl=10.0)
    sessions.remember(("t", "m", "1"), "a/x")
    sessions.remember(("t", "m", "2"), "b/x")
    assert sessions.get(("t", "m", "1")) == "a/x"  # now the most recent
    sessions.remember(("t", "m", "3"), "c/x")
    assert len(sessions) == 2
    assert sessions.get(("t", "m", "2")) is None  # the least recently used went
    later = time.monotonic() + 11
    monkeypatch.setattr(affinity.time, "monotonic", lambda: later)
    assert sessions.get(("t", "m", "1")) is None
    assert affinity.session_id("s" * 500).startswith("sha256:")


def test_provider_only_fields() -> None:
    top_k = next(e for e in messages.EXTRAS if e.name == "top_k")
    assert options_for({"top_k": 4}, [top_k], ["anthropic"], "m") == {"top_k": 4}
    assert options_for({"top_k": 4}, [top_k], ["gemini"], "m") == {"generationConfig": {"topK": 4}}
    with pytest.raises(BadRequest, match="'openai'") as caught:
        options_for({"top_k": 4}, [top_k], ["anthropic", "openai"], "m")
    assert caught.value.param == "top_k"
    # a group whose types take it differently cannot get one set of options
    with pytest.raises(BadRequest):
        options_for({"top_k": 4}, [top_k], ["anthropic", "gemini"], "m")
    hint = Extra.openai("prompt_cache_key", required=False)
    assert options_for({"prompt_cache_key": "k"}, [hint], ["anthropic"], "m") == {}
    assert options_for({"prompt_cache_key": "k"}, [hint], ["openai"], "m") == {
        "prompt_cache_key": "k"
    }


def test_consecutive_assistant_items_are_one_turn() -> None:
    items = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "q"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            ],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "t"}],
            "encrypted_content": "sig",
        },
        {
            "type": "reasoning",
            "id": "rs_2",
            "summary": [],
            "encrypted_content": responses.REDACTED_PREFIX + "data",
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x": 1}'},
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": "two"},
    ]
    user, assistant, first, second = responses.input_messages(items)
    assert user.content == (TextPart(text="q"), ImagePart(data="AAAA", media_type="image/png"))
    assert assistant.content == (
        ReasoningPart(text="t", signature="sig"),
        ReasoningPart(redacted="data"),
        TextPart(text="calling"),
    )
    assert [c.id for c in assistant.tool_calls] == ["c1", "c2"]
    assert assistant.tool_calls[1].arguments == {}
    assert (first.role, first.tool_call_id, first.text) == ("tool", "c1", "one")
    assert second.tool_call_id == "c2"


@pytest.mark.parametrize(
    ("items", "param"),
    [
        (
            [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{nope"}],
            "input[0].arguments",
        ),
        ([{"role": "tool", "content": "x"}], "input[0].role"),
        (
            [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
            "input[0].content[0].type",
        ),
        ([], "input"),
    ],
)
def test_bad_input_items_name_the_field(items: list[object], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        responses.input_messages(items)
    assert caught.value.param == param


def test_anthropic_turns_split_tool_results_and_keep_thinking() -> None:
    call = messages.call(
        {
            "model": "m",
            "max_tokens": 10,
            "system": "s",
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "r"},
                        {"type": "tool_use", "id": "tu", "name": "f", "input": {"a": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "tu",
                            "content": "bad",
                            "is_error": True,
                        },
                        {"type": "text", "text": "and?"},
                    ],
                },
            ],
        }
    )
    system, user, assistant, tool, follow = call.messages
    assert system.role == "system" and user.text == "q"
    assert assistant.content == (
        ReasoningPart(text="t", signature="sig"),
        ReasoningPart(redacted="r"),
    )
    assert assistant.tool_calls == (ToolCall(id="tu", name="f", arguments={"a": 1}),)
    assert (tool.role, tool.tool_call_id, tool.text) == ("tool", "tu", "Error: bad")
    assert follow.text == "and?"
    with pytest.raises(BadRequest, match="max_tokens"):
        messages.call({"model": "m", "messages": [{"role": "user", "content": "q"}]})
    with pytest.raises(BadRequest) as caught:
        messages.call(
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "q"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            }
        )
    assert caught.value.param == "tools.0.type"


async def test_a_record_over_the_limit_is_refused_and_not_kept(tmp_path: Path) -> None:
    store = SQLiteResponseStore(tmp_path / "r.db", max_bytes=200)
    with pytest.raises(ValueError, match="over the store's limit of 200"):
        await store.put(record("resp_big", "a"))
    await store.put(
        StoredResponse(
            id="resp_small",
            tenant="a",
            created_at=0.0,
            expires_at=time.time() + 60,
            response={},
            conversation=(),
        )
    )
    assert await store.get("a", "resp_big") is None
    assert await store.get("a", "resp_small") is not None
    await store.aclose()
