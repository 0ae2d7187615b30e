"""Headers a plugin sets for the current context (``llmkernel_http.outgoing``) reach
the requests of that provider instance only, on both send paths, and stop once closed,
even in a task that copied the context meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmkernel.provider import ProviderConfig
from llmkernel_http import HTTPProvider
from llmkernel_http.outgoing import add_headers, headers_for
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _provider(server: FakeServer, name: str = "p", **options: Any) -> HTTPProvider:
    options = {"base_url": server.url + "/v1", "api_key_env": "OUTGOING_TEST_KEY", **options}
    return HTTPProvider(ProviderConfig(name=name, type="plain", options=options))


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTGOING_TEST_KEY", "sk-outgoing")


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_the_headers_go_with_that_instance_only_until_closed(http_client: str) -> None:
    with FakeServer() as server:
        server.expect("POST", "/v1/chat", *[FakeResponse.json_body({"ok": 1})] * 4)
        mine, other = _provider(server, http_client=http_client), _provider(server, "q")
        try:

            async def attempt() -> Any:
                extra = add_headers("p", {"traceparent": TRACEPARENT})
                await mine.send_json("POST", "/chat", model="m", json={})
                await other.send_json("POST", "/chat", model="m", json={})
                # a task started now copies the context: it must not send it once closed
                later = asyncio.ensure_future(asyncio.sleep(0.05))
                extra.close()
                await later
                assert headers_for("p") is None
                await mine.send_json("POST", "/chat", model="m", json={})

            await attempt()
            assert headers_for("p") is None  # closed: never sent again from this context
            await mine.send_json("POST", "/chat", model="m", json={})
        finally:
            await mine.aclose()
            await other.aclose()
    sent = [r.headers.get("traceparent") for r in server.requests]
    assert sent == [TRACEPARENT, None, None, None]


def test_a_header_value_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="traceparent"):
        add_headers("p", {"traceparent": "00-abc\r\nx-injected: 1"})
