"""Rate limits through the kernel, against a fake HTTP server that timestamps every
request it receives."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmkernel import Kernel, hookimpl
from llmkernel.errors import RefusedError
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.types import ChatRequest, Message, Response, TextPart, Usage
from llmkernel_http import error_for_status, parse_retry_after
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, RecordedRequest
from llmkernel_ratelimit import plugin


class WireProvider(Provider):
    """A minimal HTTP provider: POST /chat with the model and max_tokens; the
    answer's usage and headers come from the server."""

    def __init__(self, config: ProviderConfig, url: str) -> None:
        super().__init__(config)
        self.url = url
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(base_url=url, timeout=30, limits=limits)

    async def chat(self, request: ChatRequest) -> Response:
        body = {"model": request.model, "max_tokens": request.max_tokens, "sent": time.monotonic()}
        reply = await self.client.post("/chat", content=json.dumps(body))
        headers = {k.lower(): v for k, v in reply.headers.items()}
        if reply.status_code != 200:
            exc = error_for_status(
                reply.status_code,
                reply.text,
                provider=self.name,
                model=request.model,
                retry_after=parse_retry_after(headers),
            )
            exc.headers = headers
            raise exc
        data = reply.json()
        return Response(
            message=Message(role="assistant", content=(TextPart(text="ok"),)),
            usage=Usage(input_tokens=data["input"], output_tokens=data["output"]),
            model=request.model,
            headers=headers,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


class WirePlugin:
    __llmkernel_name__ = "wire"

    def __init__(self, url: str) -> None:
        self.url = url

    @hookimpl
    def provide_chat(self, config: ProviderConfig) -> Provider | None:
        return WireProvider(config, self.url) if config.type == "wire" else None


class Upstream:
    """The fake server's side: when each request arrived, and what it answers."""

    def __init__(self, server: FakeServer, usage: tuple[int, int] = (10, 20)) -> None:
        self.arrivals: list[float] = []
        self.transit: list[float] = []  # arrival minus when the provider sent it
        self.usage = usage
        self.headers: dict[str, str] = {}
        self.status = 200
        self._lock = threading.Lock()
        server.expect("POST", "/chat", self.answer)

    def answer(self, request: RecordedRequest) -> FakeResponse:
        now = time.monotonic()
        with self._lock:
            self.arrivals.append(now)
            self.transit.append(now - request.json()["sent"])
        if self.status != 200:
            return FakeResponse.json_body(
                {"error": "slow down"}, status=self.status, headers=self.headers
            )
        data = {"input": self.usage[0], "output": self.usage[1]}
        return FakeResponse.json_body(data, headers=self.headers)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    import socketserver

    # a listen queue long enough for a burst of new connections
    monkeypatch.setattr(socketserver.TCPServer, "request_queue_size", 256)
    with FakeServer() as fake:
        yield fake


def admissions(kernel: Kernel) -> list[float]:
    """When the gate admitted each attempt (a spy on the store's take)."""
    gate = plugin.gate_of(kernel)
    assert gate is not None
    times: list[float] = []
    take = gate.store.take

    def spy(claims: Any, now: float) -> Any:
        got = take(claims, now)
        if not isinstance(got, float):
            times.append(now)
        return got

    gate.store.take = spy  # type: ignore[method-assign]
    return times


def make(server: FakeServer, settings: dict[str, Any], **extra: Any) -> Kernel:
    config = {
        "providers": {"a": {"type": "wire"}, "b": {"type": "wire"}},
        "models": {"group": ["a/m1", "b/m1"]},
        "plugin": {"ratelimit": settings},
        "retry": {"attempts": 1},
        **extra,
    }
    return Kernel.from_config(config, plugins=[WirePlugin(server.url), plugin], entry_points=False)


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


# Requests reach the server a little after the gate admits them (the provider sends
# at once, then the connection pool and the network), by a varying delay. Measured
# at the server, a window shorter than the limit's by that delay's spread holds no
# more than the limit.
SLACK = 0.25


def at_server(upstream: Upstream, window: float) -> int:
    """The most requests the server saw in any window of ``window`` seconds less
    the spread of transit times (on a loaded machine that spread can pass a second,
    and the check says little: the admissions check above it is exact)."""
    spread = max(upstream.transit) - min(upstream.transit)
    return most_in_any_window(upstream.arrivals, window - spread) if spread < window else 0


async def test_200_concurrent_requests_never_exceed_requests_per_window(server: FakeServer) -> None:
    upstream = Upstream(server)
    limit, window = 50, 1.0
    kernel = make(
        server,
        {"mode": "wait", "limits": {"a/*": {"requests_per_minute": limit * 60, "window": window}}},
    )
    admitted = admissions(kernel)
    async with kernel:
        responses = await asyncio.gather(
            *(kernel.achat("a/m1", f"q{i}", timeout=60) for i in range(200))
        )
    assert all(r.text == "ok" for r in responses)
    assert len(upstream.arrivals) == 200 and len(admitted) == 200
    assert most_in_any_window(admitted, window) <= limit
    assert at_server(upstream, window) <= limit
    # and the limit was the bottleneck: 200 requests needed at least 3 more windows
    assert max(upstream.arrivals) - min(upstream.arrivals) >= 3 * window - SLACK


async def test_200_concurrent_requests_never_exceed_tokens_per_window(server: FakeServer) -> None:
    upstream = Upstream(server, usage=(10, 20))
    limit, window = 1500, 1.0  # each request reserves its counted input + 40 max tokens
    kernel = make(
        server,
        {"mode": "wait", "limits": {"a": {"tokens_per_minute": limit * 60, "window": window}}},
    )
    admitted = admissions(kernel)
    async with kernel:
        await asyncio.gather(
            *(kernel.achat("a/m1", f"q{i}", max_tokens=40, timeout=60) for i in range(200))
        )
        stats = kernel.stats()
    assert len(upstream.arrivals) == 200 and len(admitted) == 200
    per_request = sum(upstream.usage)
    # each admission reserved more than the request used, so this bound is loose
    assert most_in_any_window(admitted, window) * per_request <= limit
    assert at_server(upstream, window) * per_request <= limit
    bucket = stats["ratelimit"]["buckets"]["a|tokens"]
    assert bucket["limit"] == limit and bucket["used"] <= limit


async def test_wait_mode_respects_the_deadline(server: FakeServer) -> None:
    upstream = Upstream(server)
    kernel = make(server, {"mode": "wait", "limits": {"a/m1": {"requests_per_minute": 1}}})
    async with kernel:
        await kernel.achat("a/m1", "first")
        started = time.monotonic()
        with pytest.raises(RefusedError) as info:
            await kernel.achat("a/m1", "second", timeout=0.5)
        elapsed = time.monotonic() - started
    assert len(upstream.arrivals) == 1
    assert info.value.kind == "rate_limit" and info.value.retry_after is not None
    assert 55 < info.value.retry_after <= 60
    assert elapsed < 0.5 + 1.0  # it gave up at the deadline (at once: no room in time)


async def test_wait_mode_waits_when_room_comes_in_time(server: FakeServer) -> None:
    upstream = Upstream(server)
    kernel = make(
        server, {"mode": "wait", "limits": {"a/m1": {"requests_per_minute": 120, "window": 0.5}}}
    )
    async with kernel:
        await asyncio.gather(*(kernel.achat("a/m1", f"q{i}", timeout=10) for i in range(3)))
    assert len(upstream.arrivals) == 3
    arrivals = sorted(upstream.arrivals)
    assert arrivals[2] - arrivals[0] >= 0.5 - SLACK  # the third waited for the window


async def test_reject_mode_moves_on_to_the_next_candidate(server: FakeServer) -> None:
    Upstream(server)
    kernel = make(server, {"mode": "reject", "limits": {"a/*": {"requests_per_minute": 1}}})
    async with kernel:
        first = await kernel.achat("group", "one")
        second = await kernel.achat("group", "two")
        with pytest.raises(RefusedError) as info:
            await kernel.achat("a/m1", "three")
    assert (first.provider, second.provider) == ("a", "b")
    assert info.value.retry_after is not None and info.value.retry_after > 0


async def test_learns_remaining_from_headers(server: FakeServer) -> None:
    upstream = Upstream(server)
    upstream.headers = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "20s",
    }
    kernel = make(server, {"mode": "reject", "learn_from_headers": True})
    async with kernel:
        await kernel.achat("a/m1", "one")
        with pytest.raises(RefusedError) as info:
            await kernel.achat("a/m1", "two")
        other = await kernel.achat("a/m2", "another model")
        stats = kernel.stats()
    assert len(upstream.arrivals) == 2 and other.text == "ok"
    assert info.value.retry_after is not None and 15 < info.value.retry_after <= 20
    learned = stats["deployments"]["a/m1"]["ratelimit"]["requests"]
    assert learned["limit"] == 100 and learned["remaining"] == 0 and learned["reset"] > 15


async def test_backs_off_after_a_429_with_retry_after(server: FakeServer) -> None:
    from llmkernel.errors import RateLimitError

    upstream = Upstream(server)
    upstream.status = 429
    upstream.headers = {"retry-after": "30"}
    kernel = make(server, {"mode": "reject", "learn_from_headers": True})
    async with kernel:
        with pytest.raises(RateLimitError):
            await kernel.achat("a/m1", "one")
        with pytest.raises(RefusedError) as info:
            await kernel.achat("a/m1", "two")
    assert len(upstream.arrivals) == 1
    assert info.value.retry_after is not None and 25 < info.value.retry_after <= 30


def test_no_table_no_gate() -> None:
    kernel = Kernel.from_config({}, plugins=[plugin], entry_points=False)
    assert plugin.gate_of(kernel) is None
    assert "ratelimit" not in kernel.stats()


def test_bad_settings_name_the_key() -> None:
    from llmkernel.errors import ConfigError

    with pytest.raises(ConfigError, match="requests_per_minit"):
        Kernel.from_config(
            {"plugin": {"ratelimit": {"limits": {"a/*": {"requests_per_minit": 1}}}}},
            plugins=[plugin],
            entry_points=False,
        )
    with pytest.raises(ConfigError, match="mode"):
        Kernel.from_config(
            {"plugin": {"ratelimit": {"mode": "sometimes"}}}, plugins=[plugin], entry_points=False
        )


@pytest.mark.asyncio
async def test_a_reconfigure_without_limits_drops_the_old_gate(tmp_path: Path) -> None:
    from llmkernel_ratelimit.plugin import gate_of

    base: dict[str, Any] = {"providers": {"mock": {"type": "mock"}}}
    limited = {
        **base,
        "plugin": {
            "ratelimit": {
                "store": "file",
                "path": str(tmp_path / "rl.buckets"),
                "mode": "reject",
                "limits": {"one": {"pattern": "*", "requests_per_minute": 1}},
            }
        },
    }
    k = Kernel.from_config(limited)
    await k.achat(model="mock/echo", messages="hi")
    with pytest.raises(RefusedError):
        await k.achat(model="mock/echo", messages="hi")
    await k.areconfigure(base, drain=1)  # its file store is closed with the old config
    assert gate_of(k) is None and "ratelimit" not in k.stats()
    for _ in range(3):
        await k.achat(model="mock/echo", messages="hi")
    await k.aclose()
