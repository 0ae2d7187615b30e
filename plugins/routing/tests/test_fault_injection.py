"""1,000 requests over three deployments, two failing in different ways, against
fake servers on 127.0.0.1; every upstream attempt is counted at the servers.

- ``a``: 500s and a connection reset, then (healthy again) answers;
- ``b``: 429 with ``Retry-After: 100``, a timeout, a stream that dies after its
  first chunk, another 429;
- ``c``: always answers.

Rules: ``[routing.fallback]`` retries server and network errors once on the same
deployment, moves on at once on a rate limit or a timeout. The breaker opens after
4 consecutive failures for 10 s (at least ``Retry-After``), doubling after a failed
probe. The breaker's clock is the test's, so the half-open phases are exact and the
test takes no longer than its requests (and b's one-second timeout).
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading
import time

import pytest
import routing_wire as wire

import llmkernel_routing.plugin
from llmkernel import Kernel
from llmkernel.errors import NetworkError
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer
from llmkernel_routing import routing_for
from llmkernel_routing.cli import write_table


class Clock:
    """The breakers' clock: moved by the test, never by sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Script:
    """Answers from a list in order, then with ``after`` (a response or handler)."""

    def __init__(self, *items: object, after: object) -> None:
        self.items = list(items)
        self.after = after
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            item = self.items.pop(0) if self.items else self.after
        return item(request) if callable(item) else item


def good(request) -> FakeResponse:
    return wire.ok_stream("all", "good") if request.json()["stream"] else wire.ok("all good")


def too_slow(request) -> FakeResponse:
    time.sleep(1.5)  # past b's 1 s timeouts
    return good(request)


class Held:
    """Answers well, but the first answer waits until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def __call__(self, request) -> FakeResponse:
        self.gate.wait(10)
        return good(request)


RATE_LIMITED = wire.error(429, "slow down", {"retry-after": "100"})


@pytest.fixture
def servers():
    # the fake servers' threads share the GIL with the client: hand it over sooner
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        with wire.NoDelayServer() as a, wire.NoDelayServer() as b, wire.NoDelayServer() as c:
            yield a, b, c
    finally:
        sys.setswitchinterval(interval)


def _kernel(a: FakeServer, b: FakeServer, c: FakeServer) -> Kernel:
    config = {
        "providers": {
            "a": {"type": "wire", "base_url": a.url, "timeout": 10.0},
            "b": {"type": "wire", "base_url": b.url, "timeout": 1.0, "read_timeout": 1.0},
            "c": {"type": "wire", "base_url": c.url, "timeout": 10.0},
        },
        "models": {"g": ["a/m", "b/m", "c/m"]},
        "retry": {"attempts": 2, "initial_wait": 0.0, "max_wait": 0.0, "jitter": 0.0},
        "routing": {
            "fallback": {
                "server": "retry",
                "network": "retry",
                "rate_limit": "next",
                "timeout": "next",
            }
        },
        "plugin": {
            "routing": {
                "breaker": {
                    "failures": 4,
                    "cooldown": 10,
                    "backoff": 2,
                    "max_cooldown": 300,
                    "min_requests": 10_000,  # only consecutive failures here
                }
            }
        },
    }
    return Kernel.from_config(
        config, plugins=[wire.WirePlugin(), llmkernel_routing.plugin], entry_points=False
    )


async def _call(kernel: Kernel, stream: bool) -> str:
    if stream:
        return (await kernel.astream("g", "hi").collect()).provider
    return (await kernel.achat("g", "hi")).provider


async def test_one_thousand_requests_with_two_failing_deployments(servers):
    a, b, c = servers
    held = Held()
    a.expect(
        "POST",
        wire.PATH,
        Script(
            wire.error(500),
            wire.error(500),
            wire.reset(),
            wire.error(500),
            wire.error(500),
            after=held,
        ),
    )
    b.expect(
        "POST",
        wire.PATH,
        Script(RATE_LIMITED, too_slow, wire.cut_stream("half"), RATE_LIMITED, after=good),
    )
    c.expect("POST", wire.PATH, good)
    kernel = _kernel(a, b, c)
    clock = Clock()
    routing = routing_for(kernel)
    routing.clock = clock
    answered: list[str] = []
    async with kernel:
        # -- phase 1, one at a time: both failing deployments trip their breakers
        answered.append(await _call(kernel, stream=False))  # a 500, 500; b 429; c
        assert (len(a.requests), len(b.requests), len(c.requests)) == (2, 1, 1)
        answered.append(await _call(kernel, stream=True))  # a reset, 500 (opens); b timeout; c
        assert (len(a.requests), len(b.requests), len(c.requests)) == (4, 2, 2)
        assert routing.breaker_for("a/m").state == "open"
        with pytest.raises(NetworkError):  # b's stream dies after its first chunk
            await _call(kernel, stream=True)  # (a skipped: open)
        assert (len(a.requests), len(b.requests), len(c.requests)) == (4, 3, 2)
        answered.append(await _call(kernel, stream=False))  # b 429 (opens, 100 s); c
        assert routing.breaker_for("b/m").state == "open"
        assert routing.breaker_for("b/m").cooldown == 100  # Retry-After over cooldown
        for i in range(6):
            answered.append(await _call(kernel, stream=i % 2 == 0))
        assert (len(a.requests), len(b.requests), len(c.requests)) == (4, 4, 9)

        # -- phase 2: a's cooldown is over; of 50 concurrent calls exactly one probes a
        clock.now = 15.0
        answered += await asyncio.gather(*(_call(kernel, i % 5 == 0) for i in range(50)))
        assert len(a.requests) == 5  # the single probe (it failed: open again, 20 s)
        assert routing.breaker_for("a/m").cooldown == 20
        assert len(b.requests) == 4  # still open (Retry-After 100)

        # -- phase 3: a recovers; its probe is held while 100 calls go elsewhere
        clock.now = 40.0
        probe = asyncio.ensure_future(_call(kernel, stream=False))
        for _ in range(500):
            if len(a.requests) == 6:
                break
            await asyncio.sleep(0.01)
        assert len(a.requests) == 6
        answered += await asyncio.gather(*(_call(kernel, i % 3 == 0) for i in range(100)))
        assert len(a.requests) == 6  # nothing but the probe went through half-open
        held.gate.set()
        answered.append(await probe)
        assert routing.breaker_for("a/m").state == "closed"

        # -- phase 4: the rest, 20 at a time, all to a again
        limit = asyncio.Semaphore(20)

        async def limited(i: int) -> str:
            async with limit:
                return await _call(kernel, stream=i % 10 == 0)

        answered += await asyncio.gather(*(limited(i) for i in range(839)))

        stats = kernel.stats()

    # every request that could succeed did: all but the stream cut after its first chunk
    assert len(answered) == 999
    # upstream attempts, counted at the servers, are what the rules say
    assert (len(a.requests), len(b.requests), len(c.requests)) == (845, 4, 159)
    assert answered.count("a") == 840 and answered.count("c") == 159

    deployments = stats["deployments"]
    sa, sb, sc = deployments["a/m"], deployments["b/m"], deployments["c/m"]
    assert (sa["requests"], sb["requests"], sc["requests"]) == (845, 4, 159)
    assert sa["successes"] == 840
    assert sa["errors_by_kind"] == {"network": 1, "server": 4}
    # calls that left a out while its breaker was open: skipped by the filter, or
    # refused by the gate when they routed before the probe was claimed
    assert sa["refused"] + sa["skipped"].get("breaker", 0) == 8 + 50 + 100
    assert set(sa["refused_by_kind"]) <= {"breaker"}
    assert sa["breaker"]["state"] == "closed" and sa["breaker"]["opens"] == 2
    assert sb["errors_by_kind"] == {"network": 1, "rate_limit": 2, "timeout": 1}
    assert sb["skipped"] == {"breaker": 996}
    assert sb["breaker"]["state"] == "open"
    assert sb["breaker"]["retry_after"] == pytest.approx(60.0)
    assert "4 consecutive failures" in sb["breaker"]["reason"]
    assert sb["last_error"]["kind"] == "rate_limit"
    assert (sc["successes"], sc["errors"]) == (159, 0)
    assert all(d["in_flight"] == 0 for d in deployments.values())
    assert sa["latency_ms"]["count"] + sa["ttft_ms"]["count"] >= 840
    calls = stats["routing"]["calls"]
    assert calls["calls"] == 1000 and calls["by_status"] == {"error": 1, "ok": 999}
    assert calls["attempts"] == 845 + 4 + 159 + sa["refused"]

    # `llmkernel stats` shows it per deployment
    out = io.StringIO()
    write_table(stats, out)
    table = out.getvalue()
    lines = {line.split()[0]: line.split() for line in table.splitlines() if "/m " in line}
    assert lines["a/m"][1:4] == ["845", "840", "5"]
    assert lines["b/m"][1:4] == ["4", "0", "4"]
    assert lines["c/m"][1:4] == ["159", "159", "0"]
    assert "open" in lines["b/m"]
    assert "b/m: network 1, rate_limit 2, timeout 1" in table
