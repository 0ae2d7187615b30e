"""Every failure answers OpenAI's error JSON with the right status, through the SDK's
error classes where the SDK has one."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from llmkernel_http.testing.fake_server import FakeResponse, Pause

from .conftest import Gateway, Upstream
from .test_sdk import client


def post(gateway: Gateway, key: str | None, body: Any, path: str = "/v1/chat/completions"):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{gateway.url}{path}",
        content=content,
        headers={**headers, "content-type": "application/json"},
        timeout=30,
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


HI = [{"role": "user", "content": "hi"}]


def test_401_without_a_key_or_with_a_wrong_one(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway, "lk-not-a-real-key").chat.completions.create(model="mock/echo", messages=HI)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    response = post(gateway, None, {"model": "mock/echo", "messages": HI})
    assert response.status_code == 401
    assert error_of(response)["type"] == "authentication_error"
    assert "lk-not-a-real-key" not in gateway.log


def test_403_for_a_model_the_key_may_not_use(gateway: Gateway, keys: dict[str, str]) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway, keys["echo-only"]).chat.completions.create(model="mock/chat", messages=HI)
    assert "echo-only" in caught.value.message and "mock/chat" in caught.value.message
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway, keys["echo-only"]).embeddings.create(model="mock/embed", input="x")


def test_404_for_an_unknown_route(gateway: Gateway, keys: dict[str, str]) -> None:
    response = post(gateway, keys["team"], {}, path="/v1/completions-nope")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert httpx.get(f"{gateway.url}/v1/chat/completions").status_code == 405


def test_404_when_the_upstream_has_no_such_model(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    upstream.answer(
        FakeResponse.json_body(
            {
                "error": {
                    "message": "The model `gpt-nope` does not exist",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
            status=404,
        )
    )
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway, keys["team"]).chat.completions.create(model="up/gpt-nope", messages=HI)
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        ({"messages": HI}, "model", "model is required"),
        ({"model": "mock/echo"}, "messages", "messages is required"),
        ({"model": "mock/echo", "messages": []}, "messages", "non-empty"),
        ({"model": "mock/echo", "messages": HI, "temperature": "hot"}, "temperature", "number"),
        ({"model": "mock/echo", "messages": HI, "max_tokens": 0}, "max_tokens", "positive"),
        ({"model": "mock/echo", "messages": HI, "n": 3}, "n", "n=1"),
        ({"model": "mock/echo", "messages": HI, "bogus": 1}, "bogus", "unrecognized"),
        (
            {"model": "mock/echo", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "must be one of",
        ),
        (
            {"model": "mock/echo", "messages": HI, "tools": [{"type": "function"}]},
            "tools[0].function.name",
            "required",
        ),
        ({"model": "nowhere/model", "messages": HI}, "model", "nowhere"),
        ({"model": "no-such-alias", "messages": HI}, "model", "no-such-alias"),
    ],
)
def test_400_names_the_field(
    gateway: Gateway, keys: dict[str, str], body: Any, param: str | None, words: str
) -> None:
    response = post(gateway, keys["team"], body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]
    assert "Traceback" not in response.text


def test_400_through_the_sdk_for_an_unknown_model(gateway: Gateway, keys: dict[str, str]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway, keys["team"]).chat.completions.create(model="zzz/unknown", messages=HI)
    assert caught.value.param == "model"
    assert caught.value.code == "model_not_found"


def test_413_for_a_body_over_the_limit(gateway: Gateway, keys: dict[str, str]) -> None:
    big = [{"role": "user", "content": "x" * 5000}]
    response = post(gateway, keys["team"], {"model": "mock/echo", "messages": big})
    assert response.status_code == 413
    assert "4096 bytes" in error_of(response)["message"]
    # without a Content-Length (chunked upload) the limit holds too
    chunked = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=iter([b'{"model": "mock/echo", "messages": [', b" " * 5000, b"]}"]),
        headers={"authorization": f"Bearer {keys['team']}"},
    )
    assert chunked.status_code == 413


def test_429_from_the_upstream_keeps_retry_after(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    upstream.answer(
        FakeResponse.json_body(
            {"error": {"message": "Rate limit reached", "type": "requests", "code": None}},
            status=429,
            headers={"retry-after": "7"},
        )
    )
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway, keys["team"]).chat.completions.create(model="up/gpt-4o-mini", messages=HI)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"


def test_502_when_the_upstream_fails(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    upstream.answer(
        FakeResponse.json_body({"error": {"message": "boom", "type": "server_error"}}, status=500)
    )
    with pytest.raises(openai.InternalServerError) as caught:
        client(gateway, keys["team"]).chat.completions.create(model="up/gpt-4o-mini", messages=HI)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"


def test_502_when_the_upstream_refuses_the_gateways_credentials(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    upstream.answer(
        FakeResponse.json_body(
            {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}, status=401
        )
    )
    response = post(gateway, keys["team"], {"model": "upauth/gpt-4o-mini", "messages": HI})
    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_authentication"
    assert "SECRET" not in response.text


def test_504_when_the_upstream_is_too_slow(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    upstream.answer(
        FakeResponse(status=200, headers={"content-type": "application/json"}, pieces=[Pause(8)])
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway, keys["team"]).chat.completions.create(model="up/gpt-4o-mini", messages=HI)
    assert caught.value.status_code == 504
    assert caught.value.code == "timeout"


def test_a_stream_that_fails_before_its_first_event_gets_a_status(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    upstream.answer(FakeResponse.json_body({"error": {"message": "slow down"}}, status=429))
    with pytest.raises(openai.RateLimitError):
        client(gateway, keys["team"]).chat.completions.create(
            model="up/gpt-4o-mini", messages=HI, stream=True
        )
