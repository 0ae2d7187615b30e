"""The dashboard (``GET /``) in headless Chromium (Debian's ``chromium``) over a
real ``llmkernel serve --workers 2``: after a known run, the charts and the per-key
table are drawn and every number on the page is the one ``/status.json`` answers.

Chromium reaches the gateway through a small loopback proxy that adds the admin
key to each request (the page needs one, and Chromium's command line cannot send
a header). Skipped when Chromium is missing, except under ``CI=true``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmkernel_gateway.keys import new_key

from .conftest import Gateway, base_config, key_table
from .test_sdk import client

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HI = [{"role": "user", "content": "hi"}]
ODD = '<b>"odd" & key</b>'  # a key name an admin chose: shown escaped, never as markup
DOCS_SHOT = Path(__file__).parents[3] / "docs" / "gateway" / "dashboard.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="chromium is not installed (apt-get install chromium)",
)


class AuthProxy:
    """Forwards GETs to ``target`` with ``Authorization: Bearer <key>``."""

    def __init__(self, target: str, key: str) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer = httpx.get(
                    target + self.path, headers={"authorization": f"Bearer {key}"}, timeout=30
                )
                outer.paths.append(self.path)
                self.send_response(answer.status_code)
                for name in ("content-type", "cache-control"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                return

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def chromium(url: str, tmp: Path, *args: str) -> str:
    assert CHROMIUM is not None, "CI=true needs Debian's chromium (.ci/run installs it)"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        data = data[part]
    return data


def stats(dom: str) -> dict[tuple[str, ...], str]:
    """Every ``data-stat`` number on the page: its path and ``data-value``."""
    found = {}
    for path, value in re.findall(r'data-stat="([^"]*)" data-value="([^"]*)"', dom):
        found[tuple(json.loads(html.unescape(path)))] = html.unescape(value)
    return found


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[Gateway, dict[str, str]]]:
    keys = {"admin": new_key(), "team": new_key(), "app": new_key(), ODD: new_key()}
    config = (
        base_config("http://127.0.0.1:9")
        + f"""
[models.summarize]
variants = {{ a = "mock/echo", b = "mock/chat" }}
split = {{ a = 0.5, b = 0.5 }}
by = ["user"]

[plugin.ledger]
path = "{tmp_path / "ledger.db"}"
"""
        + key_table("admin", keys["admin"], admin=True)
        + key_table("team", keys["team"], tenant="t1")
        + '[plugin.gateway.keys."team".budget]\nday = 5\nmonth = 50\n'
        + '[plugin.gateway.keys."team".rate_limit]\nrequests_per_minute = 3\n'
        + key_table("app", keys["app"])
        + key_table(ODD.replace('"', '\\"'), keys[ODD])
    )
    server = Gateway(config, tmp_path, workers=2)
    try:
        yield server, keys
    finally:
        server.stop()


def send_known_run(server: Gateway, keys: dict[str, str]) -> None:
    """13 calls: 3 answered and 2 rate-limited for ``team``; 6 of the experiment,
    a stream and an upstream failure for ``app``."""
    team, app = client(server, keys["team"]), client(server, keys["app"])
    for _ in range(3):
        team.chat.completions.create(model="mock/echo", messages=HI)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            team.with_options(max_retries=0).chat.completions.create(model="mock/echo", messages=HI)
    for user in range(6):
        app.chat.completions.create(model="summarize", messages=HI, user=f"user-{user}")
    list(app.chat.completions.create(model="mock/echo", messages=HI, stream=True))
    with pytest.raises(openai.APIError):
        app.with_options(max_retries=0).chat.completions.create(model="up/gpt-4o-mini", messages=HI)


def test_the_dashboard_draws_every_workers_numbers(
    run: tuple[Gateway, dict[str, str]], tmp_path: Path
) -> None:
    server, keys = run
    send_known_run(server, keys)
    admin = {"authorization": f"Bearer {keys['admin']}"}
    pids, status = set(), {}
    for _ in range(10):  # a new connection each: both workers answer the same totals
        status = httpx.get(f"{server.url}/status.json", headers=admin).json()
        pids.add(status["pid"])
        assert status["totals"]["day"]["requests"] == 13
    assert len(pids) == 2
    day = status["totals"]["day"]
    assert day["errors"] == 3 and day["errors_by_kind"] == {"network": 1, "rate_limit": 2}
    assert day["ttft_p50_ms"] is not None and day["latency_p95_ms"] >= day["latency_p50_ms"]
    assert sum(p["requests"] for p in status["series"]["minute"]) == 13
    assert len(status["series"]["minute"]) == 60 and len(status["series"]["hour"]) == 24
    team = status["keys"]["team"]
    assert team["requests_today"] == 5 and team["refused_rate_limit"] == 2
    assert team["budget"] == {"day": "5", "month": "50"}
    assert status["deployments"]["up/gpt-4o-mini"]["errors"] == 1
    variants = status["experiments"]["summarize"]
    assert sum(v["requests"] for v in variants.values()) == 6
    assert set(status["keys"]) == {"admin", "team", "app", ODD}
    # ordinary keys may not read it
    refused = httpx.get(
        f"{server.url}/status.json", headers={"authorization": f"Bearer {keys['app']}"}
    )
    assert refused.status_code == 403

    proxy = AuthProxy(server.url, keys["admin"])
    try:
        dom = chromium(f"{proxy.url}/", tmp_path, "--dump-dom")
        shot = tmp_path / "dashboard.png"
        chromium(f"{proxy.url}/", tmp_path, "--window-size=1280,800", f"--screenshot={shot}")
        phone = tmp_path / "phone.png"
        chromium(f"{proxy.url}/", tmp_path, "--window-size=390,844", f"--screenshot={phone}")
    finally:
        proxy.close()
    assert proxy.paths.count("/") >= 2  # the page, then its own refresh
    assert 'id="dash" data-live="1"' in dom  # the script fetched the page again and swapped it
    after = httpx.get(f"{server.url}/status.json", headers=admin).json()
    shown = stats(dom)
    assert len(shown) > 60
    for path, value in shown.items():
        expected = lookup(after, list(path))
        assert value == ("" if expected is None else str(expected)), path
    for path in (("totals", "day", "requests"), ("keys", "team", "refused_rate_limit")):
        assert path in shown
    assert shown["totals", "day", "requests"] == "13"
    assert shown["keys", "team", "spend", "day"] == after["keys"]["team"]["spend"]["day"]
    assert shown["experiments", "summarize", "a", "requests"] == str(variants["a"]["requests"])
    # the charts: six inline SVGs with a bar per bucket, no external asset
    charts = re.findall(r'<svg class="chart" data-chart="([a-z-]+)"', dom)
    assert sorted(charts) == sorted(
        f"{n}-{w}" for n in ("requests", "tokens", "cost") for w in ("minute", "hour")
    )
    assert dom.count('class="bar"') == 3 * 60 + 3 * 24
    assert not re.search(r'(src|href)="(https?:)?//', dom)
    # the per-key table, the odd name escaped
    keys_table = re.search(r'<table data-table="keys">(.*?)</table>', dom, re.S)
    assert keys_table is not None
    assert keys_table.group(1).count("<tr data-key-name=") == 4
    assert html.escape(ODD) in dom and ODD not in dom
    assert "<meter" in keys_table.group(1)  # the team's spend against its budget
    for picture in (shot, phone):
        data = picture.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    if os.environ.get("LLMKERNEL_UPDATE_DOCS_SHOT"):
        DOCS_SHOT.write_bytes(shot.read_bytes())
