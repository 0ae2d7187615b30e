"""Two gateway processes (each with its own data, cache, state and config
directories, as on two machines) and one real redis-server: a key's rate limit
holds in total across both, an answer cached through one is a hit on the other,
and with Redis killed mid-burst both keep answering (no 500), say ``degraded`` in
``/health``, and coordinate again once it is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from llmkernel_redis.testing import RedisServer, redis_server

from .conftest import Gateway, key_table, own_dirs
from .test_redis_health import config as redis_config

__all__ = ["redis_server"]

TEAM, OTHER = "sk-team-scaleout-0001", "sk-other-scaleout-0002"
ADMIN = "sk-admin-scaleout-0003"
AS_ADMIN = {"authorization": f"Bearer {ADMIN}"}  # /health's details need an admin key


def config(url: str) -> str:
    return (
        redis_config(url, redis="instances = 2\n")
        + "\n[plugin.cache]\nenabled = true\n"
        + key_table("team", TEAM)
        + '[plugin.gateway.keys."team".rate_limit]\nrequests_per_minute = 20\n'
        + key_table("other", OTHER)
        + key_table("ops", ADMIN, admin=True)
    )


def start(url: str, tmp: Path, name: str, extra: str = "") -> Gateway:
    home = tmp / name
    home.mkdir()
    return Gateway(config(url) + extra, home, env=own_dirs(home))


async def burst(urls: list[str], key: str, n: int, prompt: str = "hi") -> list[int]:
    body = {"model": "mock/echo", "messages": [{"role": "user", "content": prompt}]}
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:

        async def one(i: int) -> int:
            body_i = {**body, "messages": [{"role": "user", "content": f"{prompt} {i}"}]}
            answer = await client.post(
                f"{urls[i % len(urls)]}/v1/chat/completions", json=body_i, headers=headers
            )
            return answer.status_code

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_two_instances_share_limits_and_cache(redis_server: RedisServer, tmp_path: Path) -> None:
    one = start(redis_server.url, tmp_path, "one")
    two = start(redis_server.url, tmp_path, "two")
    try:
        urls = [one.url, two.url]
        codes = asyncio.run(burst(urls, TEAM, 200))
        assert codes.count(200) == 20, codes  # 20 a minute in total, not 20 each
        assert set(codes) == {200, 429}

        body = {
            "model": "mock/chat",
            "temperature": 0,
            "messages": [{"role": "user", "content": "cache me across instances"}],
        }
        headers = {"authorization": f"Bearer {OTHER}"}
        first = httpx.post(f"{one.url}/v1/chat/completions", json=body, headers=headers)
        assert first.status_code == 200 and first.headers["x-llmkernel-cache"] == "miss"
        again = httpx.post(f"{two.url}/v1/chat/completions", json=body, headers=headers)
        assert again.status_code == 200 and again.headers["x-llmkernel-cache"] == "hit"
        text = first.json()["choices"][0]["message"]["content"]
        assert again.json()["choices"][0]["message"]["content"] == text

        redis_server.kill()  # mid-run: both keep serving on local state
        codes = asyncio.run(burst(urls, OTHER, 40, prompt="during the outage"))
        assert 500 not in codes and codes.count(200) == 40, codes
        for gateway in (one, two):
            assert httpx.get(f"{gateway.url}/health").json() == {"status": "degraded"}
            health = httpx.get(f"{gateway.url}/health", headers=AS_ADMIN).json()
            assert health["status"] == "degraded" and health["redis"]["main"] == "degraded"

        redis_server.start()  # empty, as a restarted Redis without persistence
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(0.3)
            asyncio.run(burst(urls, OTHER, 2, prompt="probe"))
            states = [httpx.get(f"{g.url}/health").json()["status"] for g in (one, two)]
            if states == ["ok", "ok"]:
                break
        assert states == ["ok", "ok"]
        again = httpx.post(f"{one.url}/v1/chat/completions", json=body, headers=headers)
        assert again.status_code == 200  # coordination resumed: answered, no error
    finally:
        one.stop()
        two.stop()


def test_a_key_made_and_revoked_on_one_instance_holds_on_the_other(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    one = start(redis_server.url, tmp_path, "one")
    two = start(redis_server.url, tmp_path, "two")
    body = {"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]}

    def status(gateway: Gateway, key: str) -> int:
        headers = {"authorization": f"Bearer {key}"}
        return httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers=headers
        ).status_code

    def within_two_seconds(gateway: Gateway, key: str, expected: int) -> None:
        deadline = time.monotonic() + 2.5
        while status(gateway, key) != expected:
            assert time.monotonic() < deadline, f"{gateway.url} never answered {expected}"
            time.sleep(0.05)

    try:
        made = httpx.post(
            f"{one.url}/admin/keys",
            json={"name": "fleet-key", "rate_limit": {"requests_per_minute": 1000}},
            headers=AS_ADMIN,
        )
        assert made.status_code == 201, made.text
        secret = made.json()["key"]
        within_two_seconds(two, secret, 200)  # made on one, open on two
        shown = httpx.get(f"{two.url}/admin/keys/fleet-key", headers=AS_ADMIN).json()
        assert shown["source"] == "store" and shown["state"] == "active"
        revoked = httpx.delete(f"{one.url}/admin/keys/fleet-key", headers=AS_ADMIN)
        assert revoked.status_code == 200
        within_two_seconds(two, secret, 401)  # revoked on one, refused on two
        audit = httpx.get(f"{two.url}/admin/audit", headers=AS_ADMIN).json()["data"]
        assert [e["action"] for e in audit[:2]] == ["key.revoke", "key.create"]
        assert secret not in str(audit)
    finally:
        one.stop()
        two.stop()


def test_the_dashboard_sums_every_instances_ledger(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    def ledger(name: str) -> str:  # each instance its own ledger, as on two machines
        path = tmp_path / f"{name}-ledger.db"
        return f'[plugin.ledger]\npath = "{path}"\n[plugin.gateway]\nmetrics_refresh = 0.5\n'

    one = start(redis_server.url, tmp_path, "one", ledger("one"))
    two = start(redis_server.url, tmp_path, "two", ledger("two"))
    try:
        codes = asyncio.run(burst([one.url], OTHER, 7, prompt="on one"))
        codes += asyncio.run(burst([two.url], OTHER, 5, prompt="on two"))
        assert codes == [200] * 12
        deadline = time.monotonic() + 10
        while True:
            fleet = [
                httpx.get(f"{g.url}/status.json", headers=AS_ADMIN).json()["fleet"]
                for g in (one, two)
            ]
            if all(f["instances"] == 2 and f["day"]["requests"] == 12 for f in fleet):
                break
            assert time.monotonic() < deadline, fleet
            time.sleep(0.2)
        alone = httpx.get(f"{one.url}/status.json", headers=AS_ADMIN).json()
        assert alone["totals"]["day"]["requests"] == 7  # its own ledger
        assert fleet[0]["hour"]["requests"] == 12 and fleet[0]["day"]["errors"] == 0
        page = httpx.get(f"{two.url}/", headers=AS_ADMIN).text
        assert 'data-stat="[&quot;fleet&quot;, &quot;day&quot;, &quot;requests&quot;]"' in page
    finally:
        one.stop()
        two.stop()


def test_a_reload_asked_of_one_instance_reaches_the_other(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    one = start(redis_server.url, tmp_path, "one")
    two = start(redis_server.url, tmp_path, "two")
    body = {"model": "later", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {OTHER}"}
    try:
        for gateway in (one, two):  # the new config deployed to both machines
            assert (
                httpx.post(
                    f"{gateway.url}/v1/chat/completions", json=body, headers=headers
                ).status_code
                == 400
            )
            text = gateway.config_path.read_text()
            gateway.config_path.write_text(text + '\n[models]\nlater = ["mock/echo"]\n')
        answer = httpx.post(f"{one.url}/admin/reload", headers=AS_ADMIN, timeout=30)
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 2.5
        while (
            httpx.post(f"{two.url}/v1/chat/completions", json=body, headers=headers).status_code
            != 200
        ):
            assert time.monotonic() < deadline, "the other instance did not reload"
            time.sleep(0.05)
    finally:
        one.stop()
        two.stop()
