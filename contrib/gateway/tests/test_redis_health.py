"""``/health`` with ``[redis]``: ``degraded`` and why (HTTP 200, the instance keeps
serving on local state) while Redis is away, ``ok`` again once it is back."""

from __future__ import annotations

import time

import httpx

from llmkernel_redis.testing import RedisServer, require_redis_server

from .conftest import Gateway


def config(url: str, *, redis: str = "") -> str:
    """The mock, ``[redis]`` at ``url`` (with ``redis``'s extra lines) and a rate
    limit, so every call asks Redis."""
    return f"""
[providers.mock]
type = "mock"

[redis]
url = "{url}"
timeout = 2
connect_timeout = 2
retry_interval = 0.2
{redis}
[plugin.ratelimit]
mode = "reject"
limits = {{ "*" = {{ requests_per_minute = 1000 }} }}
"""


def chat(url: str) -> httpx.Response:
    body = {"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)


def health(url: str) -> dict[str, object]:
    answer = httpx.get(f"{url}/health", timeout=10)
    assert answer.status_code == 200  # a load balancer keeps a degraded instance
    found: dict[str, object] = answer.json()
    return found


def test_degraded_while_redis_is_away_then_ok(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(require_redis_server(), tmp_path)  # its address, not started yet
    gateway = Gateway(config(f"redis://:secret-pw@127.0.0.1:{server.port}/0"), tmp_path)
    try:
        assert chat(gateway.url).status_code == 200  # served on the local limiter
        seen = health(gateway.url)
        assert seen["status"] == "degraded" and seen["redis"] == {"main": "degraded"}
        reasons = seen["degraded"]
        assert isinstance(reasons, list) and reasons[0].startswith("redis main: ")
        assert "secret-pw" not in str(seen)
        metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        assert 'llmkernel_redis_up{link="main"} 0.0' in metrics
        assert 'llmkernel_redis_outages_total{link="main"} 1.0' in metrics
        server.start()
        deadline = time.monotonic() + 10
        while True:  # the link tries again after retry_interval, at the next call
            time.sleep(0.25)
            assert chat(gateway.url).status_code == 200
            seen = health(gateway.url)
            if seen["status"] == "ok" or time.monotonic() > deadline:
                break
        assert seen["status"] == "ok" and seen["redis"] == {"main": "ok"}
        assert "degraded" not in seen
        metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        assert 'llmkernel_redis_up{link="main"} 1.0' in metrics
    finally:
        gateway.stop()
        server.stop()
