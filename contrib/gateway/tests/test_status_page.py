"""The status page renders the numbers of a known run, in headless Chromium
(Debian's ``chromium`` package); skipped when no Chromium is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import openai
import pytest

from .conftest import Gateway, base_config, key_table
from .test_sdk import client

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HI = [{"role": "user", "content": "hi"}]


def dump_dom(url: str, tmp: Path) -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def cell(dom: str, deployment: str, key: str) -> str:
    row = re.search(rf'<tr data-deployment="{re.escape(deployment)}">(.*?)</tr>', dom, re.S)
    assert row is not None, f"no row for {deployment}"
    value = re.search(rf'<td data-key="{key}">(.*?)</td>', row.group(1), re.S)
    assert value is not None, f"no {key} cell"
    return value.group(1)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_status_page_shows_the_numbers_of_a_known_run(tmp_path: Path) -> None:
    server = Gateway(base_config("http://127.0.0.1:9"), tmp_path)
    try:
        sdk = client(server, "unused")
        for _ in range(3):
            sdk.chat.completions.create(model="mock/echo", messages=HI)
        list(sdk.chat.completions.create(model="mock/echo", messages=HI, stream=True))
        with pytest.raises(openai.APIStatusError):  # an upstream failure: one error
            sdk.chat.completions.create(model="up/gpt-4o-mini", messages=HI)
        served = httpx.get(f"{server.url}/").text
        assert cell(served, "mock/echo", "requests") == "4"  # rendered by the server
        dom = dump_dom(f"{server.url}/", tmp_path)
    finally:
        server.stop()
    assert 'data-live="1"' in dom  # the script fetched /status.json and redrew the table
    assert cell(dom, "mock/echo", "requests") == "4"
    assert cell(dom, "mock/echo", "error_rate") == "0.0%"
    assert cell(dom, "mock/echo", "cost_today") == "0"
    assert float(cell(dom, "mock/echo", "latency_p50_ms")) > 0
    assert float(cell(dom, "mock/echo", "ttft_p50_ms")) > 0
    assert cell(dom, "up/gpt-4o-mini", "requests") == "1"
    assert cell(dom, "up/gpt-4o-mini", "error_rate") == "100.0%"


def test_status_page_needs_a_key_and_accepts_it_as_a_cookie(tmp_path: Path) -> None:
    from llmkernel_gateway.keys import new_key

    admin, user = new_key(), new_key()
    config = (
        base_config("http://127.0.0.1:9")
        + key_table("ops", admin, admin=True)
        + key_table("app", user)
    )
    server = Gateway(config, tmp_path)
    try:
        page = httpx.get(f"{server.url}/")
        assert page.status_code == 401 and '<form method="post" action="/login"' in page.text
        assert httpx.get(f"{server.url}/status.json").status_code == 401
        refused = httpx.post(f"{server.url}/login", data={"key": user})
        assert refused.status_code == 401  # not an admin key
        with httpx.Client(base_url=server.url) as browser:
            login = browser.post("/login", data={"key": admin})
            assert login.status_code == 303
            cookie = login.headers["set-cookie"]
            attributes = {part.strip().split("=")[0] for part in cookie.split(";")}
            assert {"HttpOnly", "SameSite", "Path", "Max-Age"} <= attributes
            assert "SameSite=Strict" in cookie and "Max-Age=28800" in cookie
            assert "Secure" not in attributes  # plain HTTP here; set when served over TLS
            session = browser.cookies["llmkernel_gateway_session"]
            assert admin not in cookie and session != admin and len(session) >= 32
            assert browser.get("/").status_code == 200
            assert "deployments" in browser.get("/status.json").json()
            # the cookie opens the status page only, never the API
            assert browser.get("/v1/models").status_code == 401
            logout = browser.post("/logout")
            assert logout.status_code == 303 and "Max-Age=0" in logout.headers["set-cookie"]
            stale = httpx.get(f"{server.url}/", cookies={"llmkernel_gateway_session": session})
            assert stale.status_code == 401  # the session ended on the server
        forged = httpx.get(f"{server.url}/", cookies={"llmkernel_gateway_session": admin})
        assert forged.status_code == 401  # the key itself is no session
    finally:
        server.stop()


def test_a_login_opens_the_status_page_on_every_worker(tmp_path: Path) -> None:
    from llmkernel_gateway.keys import new_key

    admin = new_key()
    server = Gateway(
        base_config("http://127.0.0.1:9") + key_table("ops", admin, admin=True), tmp_path, workers=2
    )
    try:
        login = httpx.post(f"{server.url}/login", data={"key": admin})
        session = login.cookies["llmkernel_gateway_session"]
        pids = set()
        for _ in range(12):  # a new connection each: both workers answer
            page = httpx.get(
                f"{server.url}/status.json", cookies={"llmkernel_gateway_session": session}
            )
            assert page.status_code == 200
            pids.add(page.json()["pid"])
    finally:
        server.stop()
    assert len(pids) == 2
