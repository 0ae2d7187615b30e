"""What the Bedrock provider sends (Converse bodies) and how it reads answers and
streams: tools, images, system prompts, inference settings, reasoning, prompt
caching, stream exceptions, bad CRCs, cut streams, headers and request ids."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from bedrock_wire import (
    MODEL,
    PNG,
    REQUEST_ID,
    aws_error,
    converse,
    event,
    exception,
    json_response,
    metadata,
    path,
    stream_response,
    text_events,
    usage,
)

import llmkernel_bedrock.plugin
from llmkernel import errors
from llmkernel.kernel import Kernel
from llmkernel.types import Message, ReasoningPart, TextPart, Usage
from llmkernel_http.testing.fake_server import FakeServer

HI = [{"role": "user", "content": "hi"}]
QUALIFIED = f"aws/{MODEL}"


def make(server: FakeServer, **options: Any) -> Kernel:
    table = {
        "type": "bedrock",
        "base_url": server.url,
        "control_url": server.url,
        "region": "us-east-1",
        **options,
    }
    return Kernel.from_config(
        {"providers": {"aws": table}, "retry": {"attempts": 1}},
        plugins=[llmkernel_bedrock.plugin],
        entry_points=False,
    )


def answer(server: FakeServer, content: list[dict[str, Any]], **kw: Any) -> None:
    server.expect("POST", path(MODEL, "converse"), json_response(converse(content, **kw)))


async def test_request_body_shape(server: FakeServer) -> None:
    answer(server, [{"text": "Bonjour"}])
    async with make(server) as kernel:
        await kernel.achat(
            model=QUALIFIED,
            messages=[
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Bonjour"},
                {"role": "user", "content": "Again"},
            ],
            max_tokens=300,
            temperature=0.2,
            top_p=0.9,
            stop=["END"],
        )
    body = server.requests[-1].json()
    assert body == {
        "system": [{"text": "Answer in French."}],
        "messages": [
            {"role": "user", "content": [{"text": "Hello"}]},
            {"role": "assistant", "content": [{"text": "Bonjour"}]},
            {"role": "user", "content": [{"text": "Again"}]},
        ],
        "inferenceConfig": {
            "maxTokens": 300,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
    }
    sent = server.requests[-1]
    assert sent.headers["content-type"] == "application/json"
    assert sent.path == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"


async def test_response_headers_request_id_and_usage(server: FakeServer) -> None:
    answer(server, [{"text": "Hi!"}], use=usage(100, 20, read=900, write=50))
    async with make(server) as kernel:
        response = await kernel.achat(model=QUALIFIED, messages=HI)
    assert response.id == REQUEST_ID
    assert response.headers["x-amzn-requestid"] == REQUEST_ID
    assert response.usage == Usage(
        input_tokens=1050, output_tokens=20, cached_input_tokens=900, cache_write_tokens=50
    )


def test_usage_one_hour_cache_writes() -> None:
    from llmkernel_bedrock.parse import usage_from

    wire = {
        **usage(10, 5, read=0, write=300),
        "cacheDetails": [{"ttl": "5m", "inputTokens": 100}, {"ttl": "1h", "inputTokens": 200}],
    }
    assert usage_from(wire) == Usage(
        input_tokens=310, output_tokens=5, cache_write_tokens=300, cache_write_1h_tokens=200
    )


def test_usage_from_a_server_that_counts_cache_inside_input() -> None:
    from llmkernel_bedrock.parse import usage_from

    wire = {"inputTokens": 100, "outputTokens": 5, "totalTokens": 105, "cacheReadInputTokens": 60}
    assert usage_from(wire) == Usage(input_tokens=100, output_tokens=5, cached_input_tokens=60)


async def test_images_as_bytes_data_urls_and_s3(server: FakeServer) -> None:
    answer(server, [{"text": "A dot."}])
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "s3://my-bucket/photos/cat.jpg"}},
    ]
    async with make(server) as kernel:
        await kernel.achat(model=QUALIFIED, messages=[{"role": "user", "content": content}])
    blocks = server.requests[-1].json()["messages"][0]["content"]
    assert blocks == [
        {"text": "What is this?"},
        {"image": {"format": "png", "source": {"bytes": PNG}}},
        {
            "image": {
                "format": "jpeg",
                "source": {"s3Location": {"uri": "s3://my-bucket/photos/cat.jpg"}},
            }
        },
    ]


async def test_http_image_urls_are_refused_before_sending(server: FakeServer) -> None:
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    async with make(server) as kernel:
        with pytest.raises(errors.InvalidRequestError, match="cannot fetch"):
            await kernel.achat(model=QUALIFIED, messages=[{"role": "user", "content": content}])
    assert server.requests == []


async def test_tool_choice_and_parallel_results_merge_into_one_user_turn(
    server: FakeServer,
) -> None:
    answer(server, [{"text": "done"}])
    tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    messages = [
        {"role": "user", "content": "Look up a and b"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
                {"id": "t2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "A"},
        {"role": "tool", "tool_call_id": "t2", "content": "B"},
    ]
    async with make(server) as kernel:
        await kernel.achat(model=QUALIFIED, messages=messages, tools=[tool], tool_choice="required")
    body = server.requests[-1].json()
    assert body["toolConfig"]["toolChoice"] == {"any": {}}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["toolResult"]["toolUseId"] for b in body["messages"][2]["content"]] == ["t1", "t2"]


async def test_cache_points_and_reasoning(server: FakeServer) -> None:
    answer(
        server,
        [
            {
                "reasoningContent": {
                    "reasoningText": {"text": "Let me think.", "signature": "sig=="}
                }
            },
            {"text": "42"},
        ],
    )
    tool = {"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}
    async with make(server, cache_points=["system", "tools"]) as kernel:
        response = await kernel.achat(
            model=QUALIFIED,
            messages=[{"role": "system", "content": "Long rules."}, *HI],
            tools=[tool],
            reasoning={"budget_tokens": 4000},
            cache_points=["system", "tools", "messages"],
        )
    body = server.requests[-1].json()
    assert body["system"] == [{"text": "Long rules."}, {"cachePoint": {"type": "default"}}]
    assert body["toolConfig"]["tools"][-1] == {"cachePoint": {"type": "default"}}
    assert body["messages"][-1]["content"][-1] == {"cachePoint": {"type": "default"}}
    assert body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 4000}
    }
    assert response.reasoning == "Let me think."
    assert response.message.content[0] == ReasoningPart(text="Let me think.", signature="sig==")
    assert response.text == "42"


async def test_reasoning_is_sent_back_first_in_the_assistant_turn(server: FakeServer) -> None:
    answer(server, [{"text": "ok"}])
    previous = Message(
        role="assistant",
        content=(TextPart(text="42"), ReasoningPart(text="thought", signature="s1")),
    )
    async with make(server) as kernel:
        await kernel.achat(
            model=QUALIFIED, messages=[Message.user("q"), previous, Message.user("again")]
        )
    assistant = server.requests[-1].json()["messages"][1]
    assert assistant["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "thought", "signature": "s1"}}},
        {"text": "42"},
    ]


async def test_structured_output(server: FakeServer) -> None:
    answer(server, [{"text": '{"answer": 42}'}])
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    async with make(server) as kernel:
        response = await kernel.achat(
            model=QUALIFIED,
            messages=HI,
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        )
    assert response.parsed == {"answer": 42}
    fmt = server.requests[-1].json()["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema"
    assert fmt["structure"]["jsonSchema"]["name"] == "a"


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("stop_sequence", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
async def test_stop_reasons(server: FakeServer, stop: str, finish: str) -> None:
    answer(server, [{"text": "cut"}], stop=stop)
    async with make(server) as kernel:
        response = await kernel.achat(model=QUALIFIED, messages=HI)
    assert response.finish_reason == finish


# --------------------------------------------------------------------------- streams


async def stream_events(kernel: Kernel) -> list[Any]:
    return [e async for e in kernel.astream(model=QUALIFIED, messages=HI)]


async def test_stream_reasoning_and_headers(server: FakeServer) -> None:
    frames = [
        event("messageStart", {"role": "assistant"}),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}},
        ),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "EqQBCg=="}}},
        ),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Yes."}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "end_turn"}),
        metadata(usage(10, 30)),
    ]
    server.expect("POST", path(MODEL, "converse-stream"), stream_response(frames))
    async with make(server) as kernel:
        handle = kernel.astream(model=QUALIFIED, messages=HI)
        events = [e async for e in handle]
    assert [e.type for e in events if e.type != "metadata"] == [
        "reasoning",
        "reasoning",
        "text",
        "usage",
        "finish",
    ]
    assert handle.response is not None
    assert handle.response.reasoning == "Hmm."
    assert handle.response.message.content[0] == ReasoningPart(text="Hmm.", signature="EqQBCg==")
    assert handle.response.headers["x-amzn-requestid"] == REQUEST_ID
    assert server.requests[-1].headers["accept"] == "application/vnd.amazon.eventstream"


@pytest.mark.parametrize(
    ("member", "kind", "retryable"),
    [
        ("throttlingException", errors.RateLimitError, True),
        ("modelStreamErrorException", errors.ServerError, True),
        ("internalServerException", errors.ServerError, True),
        ("serviceUnavailableException", errors.OverloadedError, True),
        ("validationException", errors.InvalidRequestError, False),
    ],
)
async def test_exceptions_inside_the_stream(
    server: FakeServer, member: str, kind: type[errors.ProviderError], retryable: bool
) -> None:
    frames = [*text_events(["Hello"])[:2], exception(member, "it broke", originalStatusCode=500)]
    server.expect("POST", path(MODEL, "converse-stream"), stream_response(frames))
    events: list[Any] = []
    async with make(server) as kernel:
        with pytest.raises(errors.ProviderError) as info:
            async for e in kernel.astream(model=QUALIFIED, messages=HI):
                events.append(e)
    assert type(info.value) is kind
    assert info.value.retryable is retryable
    assert "it broke" in str(info.value)
    assert info.value.request_id == REQUEST_ID
    assert info.value.headers["x-amzn-requestid"] == REQUEST_ID
    assert events[-1].type == "error"


async def test_an_exception_before_any_text_falls_back_as_an_error(server: FakeServer) -> None:
    frames = [exception("throttlingException", "Too many tokens, please wait.")]
    server.expect("POST", path(MODEL, "converse-stream"), stream_response(frames))
    async with make(server) as kernel:
        with pytest.raises(errors.RateLimitError, match="Too many tokens"):
            await stream_events(kernel)


async def test_a_frame_with_a_bad_crc_is_a_clear_error(server: FakeServer) -> None:
    frames = text_events(["Hello ", "world"])
    bad = bytearray(frames[2])
    bad[-1] ^= 0xFF  # the second text frame's message CRC
    sent: list[Any] = [*frames[:2], bytes(bad), *frames[3:]]
    server.expect("POST", path(MODEL, "converse-stream"), stream_response(sent))
    async with make(server) as kernel:
        with pytest.raises(errors.MalformedResponseError, match="frame 3: message CRC mismatch"):
            await stream_events(kernel)


async def test_a_corrupt_prelude_is_refused(server: FakeServer) -> None:
    frames = text_events(["Hello"])
    bad = bytearray(frames[1])
    bad[0:4] = struct.pack(">I", 999_999)
    server.expect("POST", path(MODEL, "converse-stream"), stream_response([frames[0], bytes(bad)]))
    async with make(server) as kernel:
        with pytest.raises(errors.MalformedResponseError, match="prelude CRC mismatch"):
            await stream_events(kernel)


async def test_a_stream_cut_mid_frame_says_so(server: FakeServer) -> None:
    frames = text_events(["Hello ", "there"])
    sent: list[Any] = [*frames[:2], frames[2][:9]]
    server.expect("POST", path(MODEL, "converse-stream"), stream_response(sent, truncate=True))
    async with make(server) as kernel:
        with pytest.raises(errors.NetworkError, match="cut off") as info:
            await stream_events(kernel)
    assert info.value.retryable


async def test_a_stream_cut_between_frames_says_so(server: FakeServer) -> None:
    frames = text_events(["Hello ", "there"])[:3]
    server.expect(
        "POST", path(MODEL, "converse-stream"), stream_response(list(frames), truncate=True)
    )
    async with make(server) as kernel:
        with pytest.raises(errors.NetworkError, match="before its messageStop"):
            await stream_events(kernel)


async def test_error_statuses_carry_request_id_and_headers(server: FakeServer) -> None:
    server.expect(
        "POST",
        path(MODEL, "converse"),
        aws_error(424, "ModelErrorException", "The model returned an error."),
    )
    async with make(server) as kernel:
        with pytest.raises(errors.ServerError) as info:
            await kernel.achat(model=QUALIFIED, messages=HI)
    error = info.value
    assert error.status == 424 and error.code == "ModelErrorException"
    assert error.request_id == REQUEST_ID
    assert error.headers["x-amzn-errortype"].startswith("ModelErrorException")


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (429, "ModelNotReadyException", errors.OverloadedError),
        (408, "ModelTimeoutException", errors.TimeoutError),
        (403, "ExpiredTokenException", errors.AuthenticationError),
        (403, "InvalidSignatureException", errors.AuthenticationError),
    ],
)
async def test_more_exception_types(
    server: FakeServer, status: int, kind: str, cls: type[errors.ProviderError]
) -> None:
    server.expect("POST", path(MODEL, "converse"), aws_error(status, kind, "nope"))
    async with make(server) as kernel:
        with pytest.raises(errors.ProviderError) as info:
            await kernel.achat(model=QUALIFIED, messages=HI)
    assert type(info.value) is cls


def test_error_type_spellings() -> None:
    from llmkernel_bedrock.errors import error_type

    assert (
        error_type("ValidationException:http://internal.amazon.com/coral/x/")
        == "ValidationException"
    )
    assert error_type("com.amazon.coral.validate#ValidationException") == "ValidationException"
    assert error_type("throttlingException") == "ThrottlingException"


async def test_secrets_quoted_by_an_exception_frame_are_redacted(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream's exception frame that quotes the API key (a proxy echoing the
    request) is raised with the key and the Authorization value redacted."""
    key = "ABSKQmVkcm9ja0FQSUtleS1zdHJlYW0tZXhhbXBsZQ-SECRET"
    monkeypatch.setenv("BEDROCK_TEST_KEY", key)
    frames = [
        *text_events(["Hello"])[:2],
        exception("validationException", f"bad request (authorization: Bearer {key})"),
    ]
    server.expect("POST", path(MODEL, "converse-stream"), stream_response(frames))
    async with make(server, api_key_env="BEDROCK_TEST_KEY") as kernel:
        with pytest.raises(errors.InvalidRequestError) as info:
            async for _ in kernel.astream(model=QUALIFIED, messages=HI):
                pass
    assert server.requests[-1].headers["authorization"] == f"Bearer {key}"
    assert key not in str(info.value) and "authorization: [redacted]" in str(info.value)


def test_a_document_is_refused_not_dropped() -> None:
    from llmkernel.errors import InvalidRequestError
    from llmkernel.types import ChatRequest, FilePart, Message, TextPart
    from llmkernel_bedrock.convert import build_converse_body
    from llmkernel_bedrock.settings import BedrockSettings

    doc = FilePart(media_type="application/pdf", data="JVBERi0=")
    request = ChatRequest(
        model="m", messages=(Message(role="user", content=(TextPart(text="x"), doc)),)
    )
    with pytest.raises(InvalidRequestError, match="not sent to Bedrock"):
        build_converse_body(request, BedrockSettings(), provider="bedrock")
