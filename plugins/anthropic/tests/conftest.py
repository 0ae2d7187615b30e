"""Shared fixtures. One fake server serves each test module; each test gets its own
path prefix on it (:class:`anthropic_wire.Route`), so tests never see each other's
routes or requests. The helpers live in ``anthropic_wire`` (a unique module name:
every plugin has a ``conftest``)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from anthropic_wire import API_KEY, Route, make_provider  # noqa: E402

from llmkernel_anthropic.provider import AnthropicProvider  # noqa: E402
from llmkernel_http.testing.fake_server import FakeServer  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def route(server: FakeServer) -> Route:
    return Route(server)


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    return API_KEY


@pytest.fixture
async def provider(route: Route, api_key: str) -> AsyncIterator[AnthropicProvider]:
    instance = make_provider(route.base_url)
    yield instance
    await instance.aclose()
