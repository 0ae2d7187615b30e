"""The status page's login: a session cookie, never the key (the dashboard's
numbers are tested in test_dashboard.py)."""

from __future__ import annotations

from pathlib import Path

import httpx

from .conftest import Gateway, base_config, key_table


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
        for _ in range(100):  # a new connection each: both workers answer, in time
            page = httpx.get(
                f"{server.url}/status.json", cookies={"llmkernel_gateway_session": session}
            )
            assert page.status_code == 200
            pids.add(page.json()["pid"])
            if len(pids) == 2:
                break
    finally:
        server.stop()
    assert len(pids) == 2
