"""``HTTPProvider.send_json`` over the kernel's aiohttp transport (its fast path,
without httpx's Request and Response objects) answers exactly as through httpx:
the same request on the wire, decoded bodies, the same errors and headers."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from llmkernel import errors
from llmkernel.provider import ProviderConfig
from llmkernel_http import HTTPProvider
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

SECRET = "sk-send-json-SECRET-5678"


def _provider(server: FakeServer, **options: Any) -> HTTPProvider:
    options = {"base_url": server.url + "/v1", "api_key_env": "SEND_JSON_TEST_KEY", **options}
    return HTTPProvider(ProviderConfig(name="p", type="plain", options=options))


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEND_JSON_TEST_KEY", SECRET)


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_post_sends_json_and_reads_the_answer(http_client: str) -> None:
    with FakeServer() as server:
        server.expect(
            "POST",
            "/v1/chat",
            FakeResponse.json_body({"ok": "é"}, headers={"x-request-id": "r1"}),
        )
        provider = _provider(server, http_client=http_client)
        try:
            data, response = await provider.send_json(
                "POST", "/chat", model="m", json={"text": "héllo", "n": 1}
            )
            # the aiohttp transport takes the fast path; httpx's pool the plain one
            assert (provider._exchange is not None) == (http_client == "aiohttp")
        finally:
            await provider.aclose()
        assert data == {"ok": "é"}
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "r1"
        assert json.loads(response.read()) == {"ok": "é"}
        sent = server.requests[0]
        assert sent.json() == {"text": "héllo", "n": 1}
        assert sent.headers["content-type"] == "application/json"
        assert sent.headers["authorization"] == f"Bearer {SECRET}"
        assert sent.headers["accept"] == "application/json"
        assert int(sent.headers["content-length"]) == len(sent.body)
        assert sent.headers["host"] == server.url.removeprefix("http://")


async def test_get_sends_no_body_and_no_content_type() -> None:
    with FakeServer() as server:
        server.expect("GET", "/v1/models", FakeResponse.json_body({"data": []}))
        provider = _provider(server)
        try:
            data, _ = await provider.send_json("GET", "/models", model="")
        finally:
            await provider.aclose()
        assert data == {"data": []}
        sent = server.requests[0]
        assert sent.body == b""
        assert "content-type" not in sent.headers


async def test_a_compressed_answer_is_decoded() -> None:
    body = gzip.compress(json.dumps({"text": "squeezed"}).encode())
    with FakeServer() as server:
        server.expect(
            "POST",
            "/v1/chat",
            FakeResponse(
                headers={"content-type": "application/json", "content-encoding": "gzip"},
                body=body,
            ),
        )
        provider = _provider(server)
        try:
            data, response = await provider.send_json("POST", "/chat", model="m", json={})
        finally:
            await provider.aclose()
        assert data == {"text": "squeezed"}
        assert response.headers["content-encoding"] == "gzip"
        assert response.read() == json.dumps({"text": "squeezed"}).encode()  # httpx decodes


async def test_the_answer_keeps_its_body_for_read() -> None:
    """The body went into ``data``; the response keeps it, unread, for a caller
    that wants the bytes (``read()``), with the headers and status."""
    body = json.dumps({"text": "plain"}).encode()
    with FakeServer() as server:
        server.expect(
            "POST",
            "/v1/chat",
            FakeResponse(
                headers={"content-type": "application/json", "x-request-id": "r1"}, body=body
            ),
        )
        provider = _provider(server)
        try:
            data, response = await provider.send_json("POST", "/chat", model="m", json={})
        finally:
            await provider.aclose()
        assert data == {"text": "plain"}
        assert response.read() == body
        assert response.content == body  # read now: the same bytes again
        assert response.json() == {"text": "plain"}
        assert response.is_closed
        assert response.headers["x-request-id"] == "r1"


async def test_an_error_status_raises_the_providers_error_with_headers_and_body() -> None:
    with FakeServer() as server:
        server.expect(
            "POST",
            "/v1/chat",
            FakeResponse(
                status=429,
                headers={"content-type": "application/json", "retry-after": "7"},
                body=b'{"error": "slow down, key ' + SECRET.encode() + b'"}',
            ),
        )
        provider = _provider(server)
        try:
            with pytest.raises(errors.RateLimitError) as info:
                await provider.send_json("POST", "/chat", model="m", json={})
        finally:
            await provider.aclose()
    error = info.value
    assert error.status == 429
    assert error.retry_after == 7
    assert error.headers is not None and error.headers["retry-after"] == "7"
    assert "slow down" in str(error)
    assert SECRET not in str(error)


async def test_a_body_that_is_not_json_is_malformed() -> None:
    with FakeServer() as server:
        server.expect("POST", "/v1/chat", FakeResponse(status=200, body=b"<html>oops"))
        provider = _provider(server)
        try:
            with pytest.raises(errors.MalformedResponseError, match="oops"):
                await provider.send_json("POST", "/chat", model="m", json={})
        finally:
            await provider.aclose()


async def test_a_refused_connection_is_a_network_error() -> None:
    with FakeServer() as server:
        url = server.url
    provider = HTTPProvider(
        ProviderConfig(
            name="p", type="plain", options={"base_url": url, "api_key_env": "SEND_JSON_TEST_KEY"}
        )
    )
    try:
        with pytest.raises(errors.NetworkError):
            await provider.send_json("POST", "/chat", model="m", json={})
    finally:
        await provider.aclose()


async def test_the_sent_headers_never_show_the_key() -> None:
    with FakeServer() as server:
        server.expect("POST", "/v1/chat", FakeResponse.json_body({}))
        provider = _provider(server)
        try:
            await provider.send_json("POST", "/chat", model="m", json={})
            assert SECRET not in repr(vars(provider))
        finally:
            await provider.aclose()
