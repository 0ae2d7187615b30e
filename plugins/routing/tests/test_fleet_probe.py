"""One half-open probe for the fleet, and health results shared, on a real
redis-server: two kernels (each its own process state, as two gateway instances on
two machines) route to one fake upstream deployment on 127.0.0.1 that counts every
request it gets. After the fleet's cooldown exactly one probe reaches it across
both; its result is followed by both; a probe claim whose holder died expires;
with Redis gone each instance probes on its own; a failed health check seen by one
instance leaves the provider out on the other."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import routing_wire as wire

import llmkernel_redis.plugin
import llmkernel_routing.plugin
from llmkernel import Kernel
from llmkernel_http.testing.fake_server import FakeResponse, RecordedRequest
from llmkernel_redis.breakers import SharedBreakers
from llmkernel_redis.shared import shared_for
from llmkernel_redis.testing import RedisServer, redis_server
from llmkernel_routing.fleet import FleetBreakers
from llmkernel_routing.state import routing_for

__all__ = ["redis_server"]

COOLDOWN = 1.5
PROBE_TIMEOUT = 1.0


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMKERNEL_REDIS_URL", raising=False)


class Upstream:
    """The deployment ``a/m1`` every instance calls: fails or answers, and can hold
    its answers (a probe in flight) until :meth:`release`."""

    def __init__(self) -> None:
        self.server = wire.NoDelayServer()
        self.failing = False
        self.sick = False  # its health endpoint answers 503
        self.held = threading.Event()
        self.held.set()
        self.server.expect("POST", wire.PATH, self._chat)
        self.server.expect("GET", wire.HEALTH, self._health)

    def _chat(self, request: RecordedRequest) -> FakeResponse:
        self.held.wait(10)
        return wire.error(500, "upstream down") if self.failing else wire.ok()

    def _health(self, request: RecordedRequest) -> FakeResponse:
        return wire.error(503, "sick") if self.sick else wire.ok()

    @property
    def calls(self) -> int:
        return len(self.server.requests_to(wire.PATH))

    def hold(self) -> None:
        self.held.clear()

    def release(self) -> None:
        self.held.set()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    found = Upstream()
    yield found
    found.release()
    found.server.close()


@pytest.fixture
def spare() -> Iterator[wire.NoDelayServer]:
    with wire.NoDelayServer() as server:
        server.default = lambda request: wire.ok("spare")
        yield server


def kernel(
    redis: str, upstream: Upstream, spare: Any, probe_timeout: float = PROBE_TIMEOUT, **routing: Any
) -> Kernel:
    config = {
        "retry": {"attempts": 1},
        "providers": {
            "a": {"type": "wire", "base_url": upstream.server.url},
            "b": {"type": "wire", "base_url": spare.url},
        },
        "models": {"m": ["a/m1", "b/m1"]},
        "redis": {"url": redis, "timeout": 5, "connect_timeout": 5, "retry_interval": 0.2},
        "plugin": {
            "routing": {
                "breaker": {
                    "failures": 1,
                    "cooldown": COOLDOWN,
                    "probe_timeout": probe_timeout,
                },
                **routing,
            }
        },
    }
    plugins = [wire.WirePlugin(), llmkernel_routing.plugin, llmkernel_redis.plugin]
    return Kernel.from_config(config, plugins=plugins, entry_points=False)


async def served_by(k: Kernel) -> str:
    return (await k.achat(model="m", messages="hi")).provider


async def until(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


def state(k: Kernel) -> str:
    routing = routing_for(k)
    return routing.breaker_for("a/m1").current(routing.clock())


def fleet(k: Kernel) -> FleetBreakers:
    found = routing_for(k).fleet
    assert found is not None
    return found


async def opened_on_one_followed_by_two(one: Kernel, two: Kernel, upstream: Upstream) -> None:
    """Both closed and following the fleet; then ``a`` fails on ``one`` only, and
    ``two`` adopts the opening; then both wait out the cooldown."""
    assert await served_by(one) == "a"
    assert await served_by(two) == "a"
    upstream.failing = True
    assert await served_by(one) == "b"
    await until(lambda: state(two) == "open", what="two follows the opening")
    assert routing_for(two).breaker_for("a/m1").reason.startswith("open on another instance")
    assert upstream.calls == 3  # two never sent to the failing upstream
    await until(lambda: state(one) == state(two) == "half_open", what="cooldown over")


async def burst(
    one: Kernel, two: Kernel, upstream: Upstream, probes: int, held: float = 0.3
) -> list[str]:
    """Calls on both instances at once while the probe is held in flight (``held``
    seconds more): exactly ``probes`` of them reach the upstream; the others are
    served by ``b``."""
    before = upstream.calls
    upstream.hold()
    task = asyncio.ensure_future(
        asyncio.gather(*(served_by(k) for k in (one, two, one, two, one, two)))
    )
    await until(lambda: upstream.calls >= before + probes, what="the probe")
    await asyncio.sleep(held)  # no other request follows while it is in flight
    assert upstream.calls == before + probes
    upstream.release()
    served: list[str] = await task
    return served


async def test_one_probe_for_the_fleet_and_its_success_closes_both(
    redis_server: RedisServer, upstream: Upstream, spare: Any
) -> None:
    one, two = kernel(redis_server.url, upstream, spare), kernel(redis_server.url, upstream, spare)
    try:
        await opened_on_one_followed_by_two(one, two, upstream)
        view = two.stats()["deployments"]["a/m1"]["breaker"]["fleet"]
        assert view["by"] == fleet(one).owner and "upstream down" in view["reason"]
        upstream.failing = False
        served = await burst(one, two, upstream, probes=1)
        assert sorted(served) == ["a"] + ["b"] * 5
        assert fleet(one).probes_won + fleet(two).probes_won == 1
        assert fleet(one).probes_lost + fleet(two).probes_lost == 1
        await until(lambda: state(one) == state(two) == "closed", what="both closed")
        assert await served_by(one) == "a"
        assert await served_by(two) == "a"
        await until(lambda: fleet(two).view["a/m1"].state == "closed", what="fleet closed")
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_probe_longer_than_the_claim_keeps_it_by_renewing(
    redis_server: RedisServer, upstream: Upstream, spare: Any
) -> None:
    one, two = kernel(redis_server.url, upstream, spare), kernel(redis_server.url, upstream, spare)
    try:
        await opened_on_one_followed_by_two(one, two, upstream)
        upstream.failing = False
        calls = upstream.calls
        upstream.hold()
        first = asyncio.ensure_future(asyncio.gather(*(served_by(k) for k in (one, two, one, two))))
        await until(lambda: upstream.calls == calls + 1, what="the probe")
        # the probe runs 5 claim lifetimes, past the fleet's record of the opening
        # (its cooldown + 2 x probe_timeout after it); meanwhile both keep calling
        for _ in range(int(5 * PROBE_TIMEOUT / 0.25)):
            assert await served_by(one) == "b" and await served_by(two) == "b"
            await asyncio.sleep(0.25)
        assert upstream.calls == calls + 1  # no second probe: the claim was renewed
        upstream.release()
        assert sorted(await first) == ["a", "b", "b", "b"]
        await until(lambda: state(one) == state(two) == "closed", what="both closed")
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_failed_probe_opens_both_again_with_the_grown_cooldown(
    redis_server: RedisServer, upstream: Upstream, spare: Any
) -> None:
    one, two = kernel(redis_server.url, upstream, spare), kernel(redis_server.url, upstream, spare)
    try:
        await opened_on_one_followed_by_two(one, two, upstream)
        served = await burst(one, two, upstream, probes=1)  # still failing
        assert served == ["b"] * 6
        await until(lambda: state(one) == state(two) == "open", what="both open again")
        for k in (one, two):
            breaker = routing_for(k).breaker_for("a/m1")
            assert "half-open probe failed" in breaker.reason
            left = breaker.retry_after(routing_for(k).clock())
            assert left is not None and left > COOLDOWN  # 2 x 1.5 s, less what passed
        calls = upstream.calls
        assert await served_by(one) == "b" and await served_by(two) == "b"
        assert upstream.calls == calls
    finally:
        await one.aclose()
        await two.aclose()


async def test_the_claim_of_a_holder_that_died_expires(
    redis_server: RedisServer, upstream: Upstream, spare: Any
) -> None:
    one, two = kernel(redis_server.url, upstream, spare), kernel(redis_server.url, upstream, spare)
    try:
        await opened_on_one_followed_by_two(one, two, upstream)
        upstream.failing = False
        # a third instance claimed the probe and was killed before its result: the
        # claim it leaves in Redis is all that is left of it
        shared = shared_for(one)
        assert shared is not None
        dead = SharedBreakers(shared.main, shared.prefix, owner="killed-instance")
        assert await dead.claim_probe("a/m1", PROBE_TIMEOUT)
        calls = upstream.calls
        served = await asyncio.gather(*(served_by(k) for k in (one, two, one, two)))
        assert served == ["b"] * 4 and upstream.calls == calls  # nobody probes meanwhile
        row = two.stats()["deployments"]["a/m1"]["breaker"]
        assert row["probe_in_flight"] and row["probe_elsewhere"]
        await asyncio.sleep(PROBE_TIMEOUT + 0.2)  # the claim expired, and the waits
        served = await burst(one, two, upstream, probes=1)
        assert sorted(served) == ["a"] + ["b"] * 5
        await until(lambda: state(one) == state(two) == "closed", what="both closed")
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_probe_that_ends_without_a_verdict_gives_its_claim_back(
    redis_server: RedisServer, upstream: Upstream, spare: Any
) -> None:
    one = kernel(redis_server.url, upstream, spare, probe_timeout=30)
    two = kernel(redis_server.url, upstream, spare, probe_timeout=30)
    try:
        await opened_on_one_followed_by_two(one, two, upstream)
        upstream.failing = False
        calls = upstream.calls
        upstream.hold()
        probe = asyncio.ensure_future(served_by(one))
        await until(lambda: upstream.calls == calls + 1, what="one's probe")
        assert await served_by(two) == "b"  # one holds the claim: two waits
        assert routing_for(two).breaker_for("a/m1").elsewhere
        probe.cancel()  # the caller went away: no verdict, the claim is given back
        with pytest.raises(asyncio.CancelledError):
            await probe
        upstream.release()
        # two sees no claim in the fleet (within a read), long before the 30 s expiry
        await until(lambda: not routing_for(two).breaker_for("a/m1").elsewhere, what="freed")
        assert await served_by(two) == "a"  # two's probe
        assert upstream.calls == calls + 2
        await until(lambda: state(one) == state(two) == "closed", what="both closed")
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_gone_each_instance_probes_on_its_own(
    redis_server: RedisServer, upstream: Upstream, spare: Any
) -> None:
    one, two = kernel(redis_server.url, upstream, spare), kernel(redis_server.url, upstream, spare)
    try:
        await opened_on_one_followed_by_two(one, two, upstream)
        upstream.failing = False
        redis_server.kill()
        served = await burst(one, two, upstream, probes=2)  # as without a fleet
        assert sorted(served) == ["a", "a"] + ["b"] * 4
        assert state(one) == state(two) == "closed"
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_failed_health_check_on_one_leaves_the_provider_out_on_the_other(
    redis_server: RedisServer, upstream: Upstream, spare: Any
) -> None:
    checks = {"health_interval": 0.2, "health_timeout": 0.5}  # kept 3 x 0.7 s in Redis
    one = kernel(redis_server.url, upstream, spare, **checks)
    two = kernel(redis_server.url, upstream, spare)  # runs no checks of its own
    try:
        upstream.sick = True
        await served_by(one)  # starts one's checks
        assert await served_by(two) in ("a", "b")  # starts two's reads of the fleet
        routing = routing_for(two)
        await until(lambda: "a" in routing.health, what="two sees one's check")
        found = routing.health["a"]
        assert not found.ok and found.detail == "HTTP 503 from /v1/health"
        assert found.by == fleet(one).owner
        assert await served_by(two) == "b"  # left out on two too
        stats = two.stats()
        shown = stats["routing"]["health"]["a"]
        assert shown["ok"] is False and shown["by"] == fleet(one).owner
        row = stats["deployments"]["a/m1"]["breaker"]["health_check"]  # what /health shows
        assert row["ok"] is False and row["by"] == fleet(one).owner
        upstream.sick = False
        await until(lambda: routing.health["a"].ok, what="two sees the recovery")
        assert await served_by(two) == "a"
        await one.aclose()  # its checks stop: their results fade on two as in Redis
        await until(lambda: "a" not in routing.health, timeout=5, what="faded")
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_forked_child_holds_none_of_its_parents_claims(
    redis_server: RedisServer, upstream: Upstream, spare: Any
) -> None:
    k = kernel(redis_server.url, upstream, spare)
    try:
        found = fleet(k)
        parent = found.owner
        assert await found.claim("a/m1", 5)
        assert await found.claim("a/m1", 5)  # its own claim, renewed
        found.forget()  # what the kernel's on_fork runs in the child
        assert found.owner != parent
        assert not await found.claim("a/m1", 5)  # the parent's claim is not the child's
    finally:
        await k.aclose()
