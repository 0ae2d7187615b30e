"""Changing a running ``llmkernel serve --workers 2``: the config file reloaded on
``POST /admin/reload`` and on SIGHUP under load (no request fails, every worker
answers with the new config within 2 s), a config that does not validate refused
whole, and ``PATCH /admin/deployments`` disabling and reprioritizing a deployment
live."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmkernel_gateway.keys import new_key

from .conftest import Gateway, base_config, key_table, own_dirs
from .test_admin_keys import admin, until, worker_clients

ADMIN = new_key()
USER = new_key()
WITHIN = 2.0


def config(alias: str, extra: str = "") -> str:
    models = (
        f'[models]\nfast = ["mock/echo"]\n{alias} = ["mock/echo"]\n'
        'pair = ["mock/echo", "mock/chat"]\n'
    )
    return (
        base_config("http://127.0.0.1:9").replace('[models]\nfast = ["mock/echo"]\n', models)
        + extra
        + key_table("ops", ADMIN, admin=True)
        + key_table("app", USER)
    )


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    server = Gateway(config("first"), tmp_path, workers=2, env=own_dirs(tmp_path))
    try:
        yield server
    finally:
        server.stop()


def ask(client: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return client.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {USER}"}
    )


class Load:
    """Four threads asking ``fast`` (in every config) without pause; every answer's
    status is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.codes: list[int] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(4)]

    def run(self) -> None:
        while not self.stop.is_set():
            with httpx.Client(base_url=self.url, timeout=20) as client:  # new connections
                for _ in range(5):
                    try:
                        self.codes.append(ask(client, "fast").status_code)
                    except httpx.HTTPError as exc:
                        self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_reload_under_load_by_api_and_by_sighup(gateway: Gateway) -> None:
    workers = worker_clients(gateway, ADMIN)
    assert all(ask(c, "first").status_code == 200 for c in workers)
    assert ask(workers[0], "second").status_code == 400  # an unknown model
    with Load(gateway.url) as load:
        time.sleep(0.5)
        gateway.config_path.write_text(config("second"))
        answer = httpx.post(f"{gateway.url}/admin/reload", headers=admin(ADMIN), timeout=30)
        assert answer.status_code == 200 and answer.json()["reloaded"] is True, answer.text
        for client in workers:
            assert until(lambda c=client: ask(c, "second").status_code == 200) <= WITHIN
        assert all(ask(c, "first").status_code == 400 for c in workers)

        gateway.config_path.write_text(config("third"))
        gateway.process.send_signal(signal.SIGHUP)  # the supervisor tells each worker
        for client in workers:
            assert until(lambda c=client: ask(c, "third").status_code == 200) <= WITHIN
        time.sleep(0.5)
    assert load.failures == [] and len(load.codes) > 20
    assert set(load.codes) == {200}, sorted(set(load.codes))
    assert gateway.process.poll() is None  # SIGHUP reloads, it does not stop
    for client in workers:
        client.close()


def test_a_config_that_does_not_validate_changes_nothing(gateway: Gateway) -> None:
    gateway.config_path.write_text(config("second", '\n[routing]\nstrategy = "no-such-one"\n'))
    answer = httpx.post(f"{gateway.url}/admin/reload", headers=admin(ADMIN), timeout=30)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "config_invalid" and "no-such-one" in error["message"]
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        assert ask(client, "first").status_code == 200  # the old config serves on
        assert ask(client, "second").status_code == 400
    audit = httpx.get(f"{gateway.url}/admin/audit", headers=admin(ADMIN)).json()["data"]
    assert audit[0]["action"] == "config.reload_refused" and audit[0]["actor"] == "ops"


def test_a_deployment_disabled_and_reprioritized_live(gateway: Gateway) -> None:
    workers = worker_clients(gateway, ADMIN)
    assert {ask(c, "pair").headers["x-llmkernel-model"] for c in workers} == {"echo"}
    url = f"{gateway.url}/admin/deployments/mock/echo"
    answer = httpx.patch(url, json={"disabled": True}, headers=admin(ADMIN))
    assert answer.status_code == 200 and answer.json()["disabled"] is True, answer.text
    for client in workers:  # every worker skips it: the group's next one answers
        until(lambda c=client: ask(c, "pair").headers.get("x-llmkernel-model") == "chat")
    alone = ask(workers[0], "first")
    assert alone.status_code >= 400 and "disabled" in alone.text  # nothing else left
    listed = httpx.get(f"{gateway.url}/admin/deployments", headers=admin(ADMIN)).json()["data"]
    assert listed == [{"deployment": "mock/echo", "disabled": True}]

    httpx.patch(url, json={"disabled": False}, headers=admin(ADMIN))
    chat_first = httpx.patch(
        f"{gateway.url}/admin/deployments/mock/chat", json={"priority": 5}, headers=admin(ADMIN)
    )
    assert chat_first.status_code == 200 and chat_first.json()["priority"] == 5
    for client in workers:  # a higher priority goes first, whatever the config's order
        until(lambda c=client: ask(c, "pair").headers.get("x-llmkernel-model") == "chat")
    for client in workers:  # enabled again
        until(lambda c=client: ask(c, "first").status_code == 200)

    unknown = httpx.patch(
        f"{gateway.url}/admin/deployments/nope/x", json={"disabled": True}, headers=admin(ADMIN)
    )
    assert unknown.status_code == 404 and "nope" in unknown.text
    bad = httpx.patch(url, json={"priority": "high"}, headers=admin(ADMIN))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "priority"
    refused = httpx.patch(url, json={"disabled": True}, headers=admin(USER))
    assert refused.status_code == 403
    for client in workers:
        client.close()


def test_sighup_reloads_a_single_process(tmp_path: Path) -> None:
    server = Gateway(config("first"), tmp_path, env=own_dirs(tmp_path))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert ask(client, "second").status_code == 400
            server.config_path.write_text(config("second"))
            server.process.send_signal(signal.SIGHUP)
            assert until(lambda: ask(client, "second").status_code == 200) <= WITHIN
        assert server.process.poll() is None
    finally:
        server.stop()


def test_the_dashboard_shows_live_settings_and_health_checks(tmp_path: Path) -> None:
    extra = "\n[plugin.routing]\nhealth_interval = 0.2\n"
    server = Gateway(config("first", extra), tmp_path, env=own_dirs(tmp_path))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert ask(client, "first").status_code == 200  # the checks start with calls
            url = "/admin/deployments/mock/chat"
            assert client.patch(url, json={"priority": 3}, headers=admin(ADMIN)).status_code == 200

            def checked() -> bool:
                rows = client.get("/status.json", headers=admin(ADMIN)).json()["deployments"]
                return (rows.get("mock/echo") or {}).get("health_check") is not None

            until(checked, 10)
            rows = client.get("/status.json", headers=admin(ADMIN)).json()["deployments"]
            assert rows["mock/echo"]["health_check"]["ok"] is True
            assert rows["mock/chat"]["live"] == {"disabled": False, "priority": 3, "weight": None}
            page = client.get("/", headers=admin(ADMIN)).text
            assert "priority 3" in page and '<span class="state-closed">ok</span>' in page
    finally:
        server.stop()
