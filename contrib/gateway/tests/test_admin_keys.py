"""Keys at run time through the admin API of a real ``llmkernel serve --workers 2``:
a key created is usable on every worker within 2 s, a revoked one refused within
2 s, expiry, a rotation's grace, a budget and a rate limit set live and enforced,
admin routes refused to ordinary keys, the audit trail, and ``/health`` minimal
without an admin key."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmkernel_gateway.keys import new_key

from .conftest import Gateway, base_config, key_table, own_dirs

ADMIN = new_key()
PLAIN = new_key()
HI = [{"role": "user", "content": "hi"}]
WITHIN = 2.0  # seconds: the bound for every worker to see a change


def admin(token: str = ADMIN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("admin")
    config = (
        base_config("http://127.0.0.1:9")
        + f"""
[prices."mock/echo"]
input = 10000
output = 10000
source = "test: every call costs a little over 0.01 USD"

[plugin.ledger]
path = "{tmp / "ledger.db"}"

[plugin.ratelimit]
mode = "reject"
"""
        + key_table("ops", ADMIN, admin=True)
        + key_table("plain", PLAIN)
    )
    server = Gateway(config, tmp, workers=2, env=own_dirs(tmp))
    try:
        yield server
    finally:
        server.stop()


def worker_clients(gateway: Gateway, token: str = ADMIN) -> list[httpx.Client]:
    """One kept-alive client per worker: a connection stays on the worker that
    accepted it, and ``/health`` (as an admin) says which one that is."""
    found: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + 30
    while len(found) < 2:
        assert time.monotonic() < deadline, "only one worker ever answered"
        client = httpx.Client(base_url=gateway.url, timeout=10)
        pid = client.get("/health", headers=admin(token)).json()["pid"]
        if pid in found:
            client.close()
        else:
            found[pid] = client
    return list(found.values())


@pytest.fixture
def workers(gateway: Gateway) -> Iterator[list[httpx.Client]]:
    clients = worker_clients(gateway)
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def chat(client: httpx.Client, token: str, content: str = "hi") -> httpx.Response:
    body = {
        "model": "mock/echo",
        "max_tokens": 5,  # what a budget reserves for the answer
        "messages": [{"role": "user", "content": content}],
    }
    return client.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {token}"}
    )


def until(check: Callable[[], bool], seconds: float = WITHIN + 1.0) -> float:
    """Seconds until ``check()`` holds (fails past ``seconds``)."""
    started = time.monotonic()
    while not check():
        elapsed = time.monotonic() - started
        assert elapsed < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


def create(gateway: Gateway, **body: Any) -> dict[str, Any]:
    answer = httpx.post(f"{gateway.url}/admin/keys", json=body, headers=admin(), timeout=10)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def on_every_worker(workers: list[httpx.Client], token: str, status: int) -> float:
    """Seconds until every worker answers ``token``'s chat with ``status``."""
    return max(until(lambda c=c: chat(c, token).status_code == status) for c in workers)


def test_a_key_lives_from_create_to_revoke_on_every_worker(
    gateway: Gateway, workers: list[httpx.Client]
) -> None:
    made = create(gateway, name="team-a", tenant="team-a", metadata={"owner": "data"})
    secret = made.pop("key")
    assert secret.startswith("lk-") and secret not in json.dumps(made)
    assert "hash" not in made and "secrets" not in made and made["state"] == "active"
    assert on_every_worker(workers, secret, 200) <= WITHIN

    shown = httpx.get(f"{gateway.url}/admin/keys/team-a", headers=admin()).json()
    assert shown["metadata"] == {"owner": "data"} and shown["spend"]["requests"] >= 2
    assert float(shown["spend"]["total"]) > 0.01  # from the ledger, the config's price
    listed = httpx.get(f"{gateway.url}/admin/keys", headers=admin()).json()["data"]
    names = {row["name"]: row for row in listed}
    assert names["ops"]["read_only"] is True and names["team-a"]["read_only"] is False
    assert secret not in json.dumps(listed)

    answer = httpx.delete(f"{gateway.url}/admin/keys/team-a", headers=admin())
    assert answer.status_code == 200 and answer.json() == {"name": "team-a", "revoked": True}
    assert on_every_worker(workers, secret, 401) <= WITHIN
    gone = httpx.get(f"{gateway.url}/admin/keys/team-a", headers=admin())
    assert gone.status_code == 404 and "team-a" in gone.json()["error"]["message"]


def test_rotation_keeps_the_old_secret_for_its_grace(
    gateway: Gateway, workers: list[httpx.Client]
) -> None:
    old = create(gateway, name="rotating")["key"]
    on_every_worker(workers, old, 200)
    answer = httpx.post(
        f"{gateway.url}/admin/keys/rotating/rotate", json={"grace": 3}, headers=admin()
    )
    assert answer.status_code == 200, answer.text
    new = answer.json()["key"]
    assert new != old and answer.json()["previous_secret_valid_until"] > time.time()
    on_every_worker(workers, new, 200)
    assert all(chat(c, old).status_code == 200 for c in workers)  # in its grace
    assert on_every_worker(workers, old, 401) <= 3 + WITHIN + 1  # its grace is over
    assert all(chat(c, new).status_code == 200 for c in workers)


def test_expiry_and_disable(gateway: Gateway, workers: list[httpx.Client]) -> None:
    short = create(gateway, name="short-lived", expires_in=2)["key"]
    on_every_worker(workers, short, 200)
    until(lambda: all(chat(c, short).status_code == 401 for c in workers), 5)
    row = httpx.get(f"{gateway.url}/admin/keys/short-lived", headers=admin()).json()
    assert row["state"] == "expired"

    paused = create(gateway, name="paused")["key"]
    on_every_worker(workers, paused, 200)
    off = httpx.patch(f"{gateway.url}/admin/keys/paused", json={"disabled": True}, headers=admin())
    assert off.status_code == 200 and off.json()["state"] == "disabled"
    on_every_worker(workers, paused, 401)
    httpx.patch(f"{gateway.url}/admin/keys/paused", json={"disabled": False}, headers=admin())
    on_every_worker(workers, paused, 200)


def test_a_rate_limit_and_a_budget_set_live_are_enforced(
    gateway: Gateway, workers: list[httpx.Client]
) -> None:
    limited = create(gateway, name="limited")["key"]
    on_every_worker(workers, limited, 200)
    answer = httpx.patch(
        f"{gateway.url}/admin/keys/limited",
        json={"rate_limit": {"requests_per_minute": 4}},
        headers=admin(),
    )
    assert answer.status_code == 200 and answer.json()["rate_limit"] == {"requests_per_minute": 4}
    time.sleep(WITHIN)  # every worker has the new limit
    codes = [chat(workers[i % 2], limited, f"rl {i}").status_code for i in range(10)]
    assert codes.count(200) <= 4 and 429 in codes, codes  # the calls before count too

    spender = create(gateway, name="spender", budget={"total": "0.30"})["key"]
    on_every_worker(workers, spender, 200)
    codes = [chat(workers[i % 2], spender, f"spend {i}").status_code for i in range(12)]
    assert 429 in codes and codes.count(200) <= 3, codes  # each costs about 0.07
    refused = chat(workers[0], spender, "one more")
    assert refused.status_code == 429 and "budget" in refused.json()["error"]["message"]
    shown = httpx.get(f"{gateway.url}/admin/keys/spender", headers=admin()).json()
    assert float(shown["spend"]["total"]) <= 0.30 and shown["budget"] == {"total": "0.30"}

    raised = httpx.patch(
        f"{gateway.url}/admin/keys/spender", json={"budget": {"total": "10"}}, headers=admin()
    )
    assert raised.status_code == 200
    on_every_worker(workers, spender, 200)  # the new budget, live


def test_admin_routes_refuse_ordinary_keys_and_bad_input(gateway: Gateway) -> None:
    for method, path in (
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("GET", "/admin/spend"),
        ("POST", "/admin/reload"),
        ("GET", "/admin/audit"),
    ):
        answer = httpx.request(method, f"{gateway.url}{path}", headers=admin(PLAIN), json={})
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "admin_only"
        nobody = httpx.request(method, f"{gateway.url}{path}", json={})
        assert nobody.status_code == 401, (method, path)

    bad = httpx.post(
        f"{gateway.url}/admin/keys", json={"name": "x", "budget": {"week": 1}}, headers=admin()
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "budget.week"
    twice = create(gateway, name="only-once")
    again = httpx.post(f"{gateway.url}/admin/keys", json={"name": "only-once"}, headers=admin())
    assert again.status_code == 409 and twice["name"] == "only-once"
    config_key = httpx.delete(f"{gateway.url}/admin/keys/plain", headers=admin())
    assert config_key.status_code == 409 and config_key.json()["error"]["code"] == "read_only"
    assert chat(httpx.Client(base_url=gateway.url), PLAIN).status_code == 200  # nothing lost


def test_the_audit_trail_says_who_did_what_and_never_a_secret(gateway: Gateway) -> None:
    secret = create(gateway, name="audited")["key"]
    httpx.patch(f"{gateway.url}/admin/keys/audited", json={"tenant": "t9"}, headers=admin())
    rotated = httpx.post(f"{gateway.url}/admin/keys/audited/rotate", headers=admin()).json()["key"]
    httpx.delete(f"{gateway.url}/admin/keys/audited", headers=admin())
    entries = httpx.get(f"{gateway.url}/admin/audit?limit=1000", headers=admin()).json()["data"]
    mine = [e for e in entries if e["target"] == "audited"]
    actions = [e["action"] for e in reversed(mine)]
    assert actions == ["key.create", "key.update", "key.rotate", "key.revoke"], actions
    assert all(e["actor"] == "ops" and e["ts"] > 0 for e in mine)
    text = json.dumps(entries)
    assert secret not in text and rotated not in text and ADMIN not in text


def test_spend_by_key_model_and_day(gateway: Gateway) -> None:
    payer = create(gateway, name="payer")["key"]
    client = httpx.Client(base_url=gateway.url, timeout=10)
    until(lambda: chat(client, payer).status_code == 200)
    for by in ("key", "model", "day"):
        answer = httpx.get(f"{gateway.url}/admin/spend?by={by}", headers=admin())
        assert answer.status_code == 200, answer.text
        rows = answer.json()["data"]
        assert rows and all(by in row and "cost" in row for row in rows)
    keys = httpx.get(f"{gateway.url}/admin/spend?by=key", headers=admin()).json()["data"]
    assert any(row["key"] == "payer" and float(row["cost"]) > 0 for row in keys)
    later = httpx.get(f"{gateway.url}/admin/spend?by=key&since=2999-01-01", headers=admin())
    assert later.json()["data"] == []
    wrong = httpx.get(f"{gateway.url}/admin/spend?by=colour", headers=admin())
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "by"


def test_health_is_minimal_without_an_admin_key(gateway: Gateway) -> None:
    bare = httpx.get(f"{gateway.url}/health")
    assert bare.status_code == 200 and bare.json() == {"status": "ok"}
    full = httpx.get(f"{gateway.url}/health", headers=admin()).json()
    assert full["status"] == "ok" and "deployments" in full and "pid" in full
    plain = httpx.get(f"{gateway.url}/health", headers=admin(PLAIN)).json()
    assert plain == {"status": "ok"}


def test_the_store_file_is_private(gateway: Gateway) -> None:
    store = Path(gateway.env["XDG_DATA_HOME"], "llmkernel", "gateway", "keys.db")
    assert store.exists() and store.stat().st_mode & 0o077 == 0


def test_revoking_the_last_store_key_never_opens_a_keyless_gateway(tmp_path: Path) -> None:
    import asyncio

    from llmkernel_gateway.keyops import create
    from llmkernel_gateway.keystore import SQLiteKeyStore

    env = own_dirs(tmp_path)
    store_path = Path(env["XDG_DATA_HOME"], "llmkernel", "gateway", "keys.db")
    store_path.parent.mkdir(parents=True)
    store = SQLiteKeyStore(store_path)
    _, secret = asyncio.run(create(store, {"name": "only", "admin": True}, actor="test"))
    server = Gateway(base_config("http://127.0.0.1:9"), tmp_path, env=env)  # no config keys
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert chat(client, secret).status_code == 200
            assert chat(client, "lk-anything").status_code == 401
            gone = client.delete("/admin/keys/only", headers=admin(secret))
            assert gone.status_code == 200
            assert chat(client, secret).status_code == 401
            assert (
                client.post(
                    "/v1/chat/completions", json={"model": "mock/echo", "messages": HI}
                ).status_code
                == 401
            )  # no key at all: still refused
    finally:
        server.stop()
