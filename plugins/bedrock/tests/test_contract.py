"""The shared provider contract, run against a fake Bedrock Runtime speaking the
Converse JSON and the binary ConverseStream event stream, sent byte by byte: once
signed with SigV4 (the signature verified), once with a Bedrock API key."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from bedrock_wire import (
    MODEL,
    SECRET_KEY,
    aws_error,
    check_sigv4,
    converse,
    event,
    foundation_models,
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
from llmkernel.types import ToolCall, Usage
from llmkernel_http import REDACTED
from llmkernel_http.testing.contract import ProviderContract
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate, RecordedRequest

#: Temporary credentials' session token (the shape of an STS one).
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//contract-SESSION-TOKEN"

ERRORS = {
    "authentication": (
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
    "permission": (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    "not_found": (
        404,
        "ResourceNotFoundException",
        "Could not resolve the foundation model from the provided model identifier.",
    ),
    "rate_limit": (
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    ),
    "quota": (
        400,
        "ServiceQuotaExceededException",
        "Your request exceeds the service quota for your account.",
    ),
    "invalid_request": (
        400,
        "ValidationException",
        "A conversation must start with a user message. Try again with a conversation that "
        "starts with a user message.",
    ),
    "context_window": (400, "ValidationException", "Input is too long for requested model."),
    "server": (
        500,
        "InternalServerException",
        "The system encountered an unexpected error during processing. Try your request again.",
    ),
    "overloaded": (
        503,
        "ServiceUnavailableException",
        "Bedrock is unable to process your request.",
    ),
}


def wire_usage(used: Usage) -> dict[str, Any]:
    plain = used.input_tokens - used.cached_input_tokens - used.cache_write_tokens
    return usage(
        plain, used.output_tokens, read=used.cached_input_tokens, write=used.cache_write_tokens
    )


def words(text: str) -> list[str]:
    out = [w + " " for w in text.split(" ")]
    out[-1] = out[-1][:-1]
    return out


class TestBedrockContract(ProviderContract):
    """SigV4 with static credentials from the environment (the standard chain)."""

    plugin: ClassVar[object] = llmkernel_bedrock.plugin
    provider_type = "bedrock"
    model = MODEL
    # The contract sets and unsets this variable; the chain reads it.
    api_key_env = "AWS_SECRET_ACCESS_KEY"
    api_key = SECRET_KEY
    supports_embeddings = False  # the contract model is a chat model: see test_embed.py

    def options(self, server: FakeServer) -> dict[str, Any]:
        return {"base_url": server.url, "control_url": server.url, "region": "us-east-1"}

    def make_kernel(self, server: FakeServer, **retry: Any) -> Kernel:
        config = {
            "providers": {"p": {"type": "bedrock", **self.options(server)}},
            "retry": {"attempts": 1, "initial_wait": 0.0, "max_wait": 0.0, **retry},
        }
        return Kernel.from_config(config, plugins=[self.plugin], entry_points=False)

    def usage_sample(self) -> Usage:
        return Usage(
            input_tokens=62, output_tokens=7, cached_input_tokens=30, cache_write_tokens=20
        )

    def script_text(
        self, server: FakeServer, text: str, usage: Usage, *, stream: bool, gate: Gate | None = None
    ) -> None:
        if not stream:
            server.expect(
                "POST",
                path(MODEL, "converse"),
                json_response(converse([{"text": text}], use=wire_usage(usage))),
            )
            return
        frames: list[bytes | Gate] = list(text_events(words(text)))
        if gate is not None:
            frames.insert(2, gate)  # after messageStart and the first text delta
        frames.append(metadata(wire_usage(usage)))
        server.expect("POST", path(MODEL, "converse-stream"), stream_response(frames))

    def script_tool_calls(self, server: FakeServer, calls: list[ToolCall], *, stream: bool) -> None:
        if not stream:
            content = [
                {"toolUse": {"toolUseId": c.id, "name": c.name, "input": dict(c.arguments)}}
                for c in calls
            ]
            server.expect(
                "POST",
                path(MODEL, "converse"),
                json_response(converse(content, stop="tool_use", use=usage(122, 33))),
            )
            return
        frames = [event("messageStart", {"role": "assistant"})]
        for index, call in enumerate(calls):
            arguments = json.dumps(dict(call.arguments))
            half = len(arguments) // 2
            start = {"toolUse": {"toolUseId": call.id, "name": call.name}}
            frames.append(event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            for fragment in (arguments[:half], arguments[half:]):
                delta = {"toolUse": {"input": fragment}}
                frames.append(
                    event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
                )
            frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        frames += [event("messageStop", {"stopReason": "tool_use"}), metadata(usage(122, 33))]
        server.expect("POST", path(MODEL, "converse-stream"), stream_response(list(frames)))

    def script_error(
        self, server: FakeServer, kind: str, *, stream: bool, retry_after: float | None = None
    ) -> None:
        status, aws_type, message = ERRORS[kind]
        extra = {"retry-after": str(retry_after)} if retry_after is not None else {}
        action = "converse-stream" if stream else "converse"
        server.expect("POST", path(MODEL, action), aws_error(status, aws_type, message, **extra))

    def script_cut_stream(self, server: FakeServer, *, reset: bool) -> None:
        frames = text_events(["Hello ", "there", ", friend"])
        # messageStart, two text deltas, then half of the third delta's frame.
        sent: list[bytes | Gate] = [*frames[:3], frames[3][: len(frames[3]) // 2]]
        server.expect(
            "POST",
            path(MODEL, "converse-stream"),
            stream_response(sent, truncate=not reset, reset=reset),
        )

    def script_malformed(self, server: FakeServer, *, stream: bool) -> None:
        html = "<html><body>502 Bad Gateway</body></html>\n"
        action = "converse-stream" if stream else "converse"
        server.expect(
            "POST", path(MODEL, action), FakeResponse.text_body(html, content_type="text/html")
        )

    def script_models(self, server: FakeServer, ids: list[str]) -> None:
        server.expect("GET", "/foundation-models", json_response(foundation_models(ids)))

    def check_auth(self, request: RecordedRequest, api_key: str) -> None:
        check_sigv4(request, secret=api_key)

    def check_tool_result_request(self, body: dict[str, Any]) -> None:
        assert body["messages"][1] == {
            "role": "assistant",
            "content": [
                {
                    "toolUse": {
                        "toolUseId": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                }
            ],
        }
        assert body["messages"][2] == {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C and sunny"}]}}
            ],
        }
        assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
        assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == [
            "city"
        ]

    # ------------------------------------------------------------ secrets under SigV4
    #
    # The contract's redaction tests check that the key the server received is not
    # echoed back; SigV4 never sends the secret key (check_sigv4 asserts it), so
    # here the secrets that travel are the session token (X-Amz-Security-Token) and
    # the Authorization value, and the echo quotes the secret key as well.

    @staticmethod
    def _echo_secrets(request: RecordedRequest) -> FakeResponse:
        echoed = "; ".join(f"{name}: {value}" for name, value in request.headers.items())
        echoed = f"secret={SECRET_KEY}; {echoed}"
        body = {"message": f"invalid credentials ({echoed})"}
        return FakeResponse(
            status=403,
            headers={
                "content-type": "application/json",
                "x-amzn-errortype": f"UnrecognizedClientException:{echoed[:150]}",
                "x-echo": echoed[:300],
            },
            body=json.dumps(body).encode(),
        )

    @pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
    async def test_secret_echoed_in_an_error_body_is_redacted(
        self, kernel: Kernel, server: FakeServer, stream: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
        server.default = self._echo_secrets
        messages = [{"role": "user", "content": "hi"}]
        async with kernel:
            with pytest.raises(errors.AuthenticationError) as info:
                if stream:
                    async for _ in kernel.astream(model=self.qualified_model, messages=messages):
                        pass
                else:
                    await kernel.achat(model=self.qualified_model, messages=messages)
        error = info.value
        sent = server.requests[-1].headers
        assert sent["x-amz-security-token"] == SESSION_TOKEN
        secrets = (SECRET_KEY, SESSION_TOKEN, sent["authorization"])
        for text in (str(error), repr(error), error.message, error.code or ""):
            assert not any(secret in text for secret in secrets), text
        assert error.headers["x-echo"].startswith(f"secret={REDACTED}")
        assert not any(s in v for s in secrets for v in error.headers.values())
        assert REDACTED in str(error)
        assert not any(s in repr(vars(kernel.provider("p"))) for s in secrets)

    async def test_secret_echoed_in_health_and_model_list_is_redacted(
        self, kernel: Kernel, server: FakeServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
        server.default = self._echo_secrets
        async with kernel:
            provider = kernel.provider("p")
            health = await provider.health()
            with pytest.raises(errors.AuthenticationError) as info:
                await provider.list_models()
        assert not health.ok and REDACTED in health.detail
        for text in (health.detail, str(info.value)):
            assert SECRET_KEY not in text and SESSION_TOKEN not in text, text


class TestBedrockAPIKeyContract(TestBedrockContract):
    """A Bedrock API key (``api_key_env``) sent as a bearer token, no signing."""

    api_key_env = "LLMKERNEL_CONTRACT_KEY"
    api_key = "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxlLWtleQ-SECRET"
    # the key travels in the Authorization header: the contract's own checks apply
    test_secret_echoed_in_an_error_body_is_redacted = (  # type: ignore[assignment]
        ProviderContract.test_secret_echoed_in_an_error_body_is_redacted
    )
    test_secret_echoed_in_health_and_model_list_is_redacted = (  # type: ignore[assignment]
        ProviderContract.test_secret_echoed_in_health_and_model_list_is_redacted
    )

    def make_kernel(self, server: FakeServer, **retry: Any) -> Kernel:
        return ProviderContract.make_kernel(self, server, **retry)

    def check_auth(self, request: RecordedRequest, api_key: str) -> None:
        assert request.headers.get("authorization") == f"Bearer {api_key}"
        assert "x-amz-date" not in request.headers
