"""Every error answer Ollama (or a proxy in front of it) gives, mapped to the kernel's."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest

from llmkernel import errors
from llmkernel.provider import ProviderConfig
from llmkernel.types import ChatRequest, Message
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer
from llmkernel_ollama.provider import OllamaProvider

MODEL = "llama3.2"
SECRET = "ollama-SECRET-key-77"


@pytest.fixture
def provider(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> OllamaProvider:
    monkeypatch.setenv("OLLAMA_TEST_KEY", SECRET)
    return OllamaProvider(
        ProviderConfig(
            name="local",
            type="ollama",
            options={"base_url": server.url, "api_key_env": "OLLAMA_TEST_KEY"},
        )
    )


def hi() -> ChatRequest:
    return ChatRequest(model=MODEL, messages=(Message.user("hi"),))


async def fail(provider: OllamaProvider, *, stream: bool) -> errors.ProviderError:
    with pytest.raises(errors.ProviderError) as info:
        if stream:
            async for _ in provider.stream(hi()):
                pass
        else:
            await provider.chat(hi())
    await provider.aclose()
    error = info.value
    assert error.provider == "local" and error.model == MODEL
    assert SECRET not in str(error) and SECRET not in repr(error)
    return error


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            400,
            {"error": 'invalid format: expected "json" or a JSON schema'},
            errors.InvalidRequestError,
        ),
        (
            400,
            {"error": "registry.ollama.ai/library/gemma3:latest does not support tools"},
            errors.InvalidRequestError,
        ),
        (
            400,
            {"error": "the input length exceeds the context length"},
            errors.ContextWindowExceededError,
        ),
        (
            500,
            {"error": "input length exceeds maximum context length"},
            errors.ContextWindowExceededError,
        ),
        (401, {"error": "unauthorized"}, errors.AuthenticationError),
        (403, {"error": "forbidden"}, errors.PermissionDeniedError),
        (
            404,
            {"error": 'model "llama3.2" not found, try pulling it first'},
            errors.ModelNotFoundError,
        ),
        (408, {"error": "request timeout"}, errors.TimeoutError),
        (409, {"error": "conflict"}, errors.ServerError),
        (413, {"error": "request entity too large"}, errors.InvalidRequestError),
        (
            422,
            {"error": {"message": "bad schema", "type": "invalid_request_error"}},
            errors.InvalidRequestError,
        ),
        (429, {"error": "too many requests"}, errors.RateLimitError),
        (500, {"error": "llama runner process has terminated: exit status 2"}, errors.ServerError),
        (502, {"error": "bad gateway"}, errors.ServerError),
        (
            503,
            {"error": "server busy, please try again.  maximum pending requests exceeded"},
            errors.OverloadedError,
        ),
    ],
)
async def test_status_and_body_map_to_kinds(
    server: FakeServer,
    provider: OllamaProvider,
    status: int,
    body: dict[str, Any],
    kind: type[errors.ProviderError],
    stream: bool,
) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body(body, status=status, headers={"x-request-id": "req-42"}),
    )
    error = await fail(provider, stream=stream)
    assert type(error) is kind
    assert error.status == status
    assert error.request_id == "req-42"
    message = body["error"] if isinstance(body["error"], str) else body["error"]["message"]
    assert message in str(error)
    sent = server.requests[0]
    assert sent.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "<in 30 s>"}, 30.0),
        ({}, None),
    ],
    ids=["seconds", "ms", "http-date", "absent"],
)
async def test_retry_after_forms(
    server: FakeServer, provider: OllamaProvider, headers: dict[str, str], expected: float | None
) -> None:
    if headers.get("retry-after") == "<in 30 s>":
        headers = {"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)}
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body({"error": "too many requests"}, status=429, headers=headers),
    )
    error = await fail(provider, stream=False)
    assert isinstance(error, errors.RateLimitError)
    if expected is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(expected, abs=2.0)


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_non_json_error_body_keeps_a_snippet(
    server: FakeServer, provider: OllamaProvider, stream: bool
) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.text_body(
            "<html><body><h1>502 Bad Gateway</h1>\n nginx</body></html>",
            status=502,
            content_type="text/html",
        ),
    )
    error = await fail(provider, stream=stream)
    assert type(error) is errors.ServerError
    assert "502 Bad Gateway" in str(error)


async def test_wrong_base_url_gets_a_hint(server: FakeServer, provider: OllamaProvider) -> None:
    server.expect("POST", "/api/chat", FakeResponse.text_body("404 page not found", status=404))
    error = await fail(provider, stream=False)
    assert isinstance(error, errors.ModelNotFoundError)
    assert "check base_url" in str(error)


async def test_error_object_in_a_200_chat_body(
    server: FakeServer, provider: OllamaProvider
) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body({"error": "llama runner process no longer running"}),
    )
    error = await fail(provider, stream=False)
    assert type(error) is errors.ServerError
    assert "no longer running" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"",
        b"[1, 2, 3]",
        b'{"message": "no"}',
        b'{"message": {"content": 7}}',
        b'{"message": {"tool_calls": {"a": 1}}}',
    ],
)
async def test_unreadable_200_bodies_are_malformed(
    server: FakeServer, provider: OllamaProvider, body: bytes
) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse(status=200, headers={"content-type": "application/json"}, body=body),
    )
    error = await fail(provider, stream=False)
    assert type(error) is errors.MalformedResponseError
    assert "Ollama" in str(error) or "JSON" in str(error)
    assert not isinstance(error.__cause__, KeyError | TypeError)


async def test_connection_refused_names_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer()
    url = server.url
    server.close()
    provider = OllamaProvider(
        ProviderConfig(name="local", type="ollama", options={"base_url": url})
    )
    with pytest.raises(errors.NetworkError, match="not reachable") as info:
        await provider.chat(hi())
    assert url in str(info.value)
    assert info.value.retryable and info.value.provider == "local"
    with pytest.raises(errors.NetworkError, match="not reachable"):
        async for _ in provider.stream(hi()):
            pass
    await provider.aclose()


async def test_connection_reset_on_chat(server: FakeServer, provider: OllamaProvider) -> None:
    server.expect("POST", "/api/chat", FakeResponse(status=200, pieces=['{"mod'], reset=True))
    error = await fail(provider, stream=False)
    assert isinstance(error, errors.NetworkError) and error.retryable
