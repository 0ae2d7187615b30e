"""Disconnects, SIGTERM, exposure without keys, the key CLI, metrics, and plugins
that refuse (a budget) seen through the gateway."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from llmkernel import hookimpl
from llmkernel.config import Config
from llmkernel.errors import BudgetExceededError
from llmkernel_gateway.app import Gateway as GatewayApp
from llmkernel_gateway.keys import digest, new_key
from llmkernel_http.testing.fake_server import FakeResponse, Pause

from .conftest import Gateway, Upstream, base_config, free_port, key_table, wait_healthy
from .test_sdk import client, upstream_chunk

HI = [{"role": "user", "content": "hi"}]


class CountingPieces(list[Any]):
    """SSE pieces that count how many the fake upstream has sent."""

    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self.sent = 0
        self.finished = False

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            if isinstance(item, str):
                self.sent += 1
            yield item
        self.finished = True


def slow_stream(chunks: int, pause: float) -> CountingPieces:
    pieces: list[Any] = []
    for i in range(chunks):
        pieces.append(f"data: {json.dumps(upstream_chunk({'content': f'w{i} '}))}\n\n")
        pieces.append(Pause(pause))
    pieces.append(f"data: {json.dumps(upstream_chunk({}, finish='stop'))}\n\n")
    pieces.append("data: [DONE]\n\n")
    return CountingPieces(pieces)


def wait_until_steady(pieces: CountingPieces, limit: float = 10.0) -> int:
    """The count once it stops moving for a second (bounded)."""
    deadline = time.monotonic() + limit
    last, since = pieces.sent, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if pieces.sent != last:
            last, since = pieces.sent, time.monotonic()
        elif time.monotonic() - since >= 1.0:
            break
    return pieces.sent


def test_client_disconnect_mid_stream_cancels_the_upstream_request(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    pieces = slow_stream(100, 0.1)  # ten seconds if nobody stops it
    upstream.answer(
        FakeResponse(status=200, headers={"content-type": "text/event-stream"}, pieces=pieces)
    )
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {keys['team']}"},
        json={"model": "up/gpt-4o-mini", "messages": HI, "stream": True},
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        seen = [line for _, line in zip(range(6), lines, strict=False)]
    assert any("w0" in line for line in seen)
    sent = wait_until_steady(pieces)
    assert not pieces.finished
    assert sent < 60, f"the upstream kept streaming after the client left ({sent} chunks)"
    # the gateway logged the request as cancelled, and still serves
    deadline = time.monotonic() + 5
    while '"status": 499' not in gateway.log and time.monotonic() < deadline:
        time.sleep(0.1)
    assert '"status": 499' in gateway.log
    assert (
        client(gateway, keys["team"])
        .chat.completions.create(model="mock/echo", messages=HI)
        .choices[0]
        .message.content
        == "hi"
    )


def test_sigterm_during_a_stream_lets_it_finish(upstream: Upstream, tmp_path: Path) -> None:
    pieces = slow_stream(15, 0.1)
    upstream.answer(
        FakeResponse(status=200, headers={"content-type": "text/event-stream"}, pieces=pieces)
    )
    server = Gateway(base_config(upstream.url), tmp_path)
    try:
        with httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            json={"model": "up/gpt-4o-mini", "messages": HI, "stream": True},
            timeout=30,
        ) as response:
            lines = response.iter_lines()
            first = [line for _, line in zip(range(4), lines, strict=False)]
            server.terminate()  # SIGTERM with the stream in flight
            rest = list(lines)
        body = "\n".join(first + rest)
        assert "w0 " in body and "w14 " in body
        assert [line for line in rest if line][-1] == "data: [DONE]"
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly
        assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
        assert '"event": "gateway.stopped"' in server.log  # the kernel was closed
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health", timeout=2)
    finally:
        server.stop()


def run_cli(
    *args: str, config: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMKERNEL_")}
    command = [sys.executable, "-m", "llmkernel_cli"]
    if config is not None:
        command += ["-c", str(config)]
    return subprocess.run(
        [*command, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_refuses_to_listen_beyond_loopback_without_keys(tmp_path: Path) -> None:
    config = tmp_path / "open.toml"
    config.write_text("[plugin.gateway]\nport = 4999\n")
    result = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), config=config)
    assert result.returncode == 2
    assert "refusing to listen on '0.0.0.0' without keys" in result.stderr


def test_gateway_keys_create_prints_the_key_once_and_stores_a_hash(tmp_path: Path) -> None:
    config = tmp_path / "keys.toml"
    config.write_text("")
    created = run_cli(
        "gateway-keys",
        "create",
        "team-b",
        "--model",
        "mock/*",
        "--tenant",
        "acme",
        "--print-toml",
        config=config,
    )
    assert created.returncode == 0, created.stderr
    key = re.search(r"^key: (lk-\S+)$", created.stdout, re.M)
    assert key is not None
    table = created.stdout[created.stdout.index("[plugin.gateway.keys") :]
    assert f'hash = "sha256:{digest(key.group(1))}"' in table
    assert created.stdout.count(key.group(1)) == 1  # shown once; the config gets the hash
    config.write_text(table)
    listed = run_cli("gateway-keys", "list", "--json", config=config)
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["tenant"], row["models"], row["admin"]) == (
        "team-b",
        "acme",
        ["mock/*"],
        False,
    )
    assert row["source"] == "config" and row["read_only"] is True
    assert key.group(1) not in listed.stdout and "sha256" not in listed.stdout
    hashed = run_cli("gateway-keys", "hash", config=config, stdin=key.group(1) + "\n")
    assert hashed.stdout.strip() == f"sha256:{digest(key.group(1))}"


def test_a_wrong_gateway_table_is_refused_with_the_key_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[plugin.gateway]\nmax_body_byte = 10\n[plugin.gateway.keys.x]\nhash = "abc"\n'
    )
    result = run_cli("serve", config=config)
    assert result.returncode == 2
    assert "max_body_byte" in result.stderr and "max_body_bytes" in result.stderr


def test_metrics_count_requests_by_key_and_need_an_admin_key(
    gateway: Gateway, keys: dict[str, str]
) -> None:
    sdk = client(gateway, keys["echo-only"])
    for _ in range(3):
        sdk.chat.completions.create(model="mock/echo", messages=HI)
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="mock/chat", messages=HI)
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    assert (
        httpx.get(
            f"{gateway.url}/metrics", headers={"authorization": f"Bearer {keys['team']}"}
        ).status_code
        == 403
    )
    text = httpx.get(
        f"{gateway.url}/metrics", headers={"authorization": f"Bearer {keys['admin']}"}
    ).text
    line = re.search(
        r'^llmkernel_gateway_requests_total\{key="echo-only",model="echo",provider="mock",'
        r'route="chat",status="200"\} (\S+)$',
        text,
        re.M,
    )
    assert line is not None and float(line.group(1)) >= 3
    assert re.search(
        r'^llmkernel_gateway_errors_total\{key="echo-only",kind="permission",.*\} 1\.0$', text, re.M
    )
    assert "llmkernel_gateway_request_latency_seconds_bucket" in text
    assert keys["admin"] not in text


def test_one_log_line_per_request_without_prompts_or_keys(
    gateway: Gateway, keys: dict[str, str]
) -> None:
    secret_prompt = "my-private-prompt-text-4711"
    raw = client(gateway, keys["team"]).chat.completions.with_raw_response.create(
        model="mock/echo", messages=[{"role": "user", "content": secret_prompt}]
    )
    rid = raw.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while rid not in gateway.log and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = [json.loads(row) for row in gateway.log.splitlines() if f'"{rid}"' in row]
    assert line["event"] == "gateway.request" and line["status"] == 200
    assert line["key"] == "team" and line["tenant"] == "team-tenant"
    assert line["provider"] == "mock" and line["output_tokens"] == 1
    assert secret_prompt not in gateway.log
    assert all(k not in gateway.log for k in keys.values())


# ----------------------------------------------------------------------------- plugins


class Refuser:
    """A budget plugin stand-in: refuses every request from the ``broke`` key."""

    __llmkernel_name__ = "test-refuser"

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    @hookimpl
    def on_request(self, request: Any) -> None:
        self.seen.append(dict(request.metadata))
        if request.metadata.get("key") == "broke":
            raise BudgetExceededError(
                "daily budget for key 'broke' is spent",
                limit="key:broke",
                period="day",
                retry_after=3600,
            )
        if request.metadata.get("key") == "buggy":
            raise RuntimeError("a bug in a plugin")


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[str, GatewayApp, dict[str, str], Refuser]]:
    """The gateway app with a test plugin, served by uvicorn in a thread."""
    names = {"broke": new_key(), "rich": new_key(), "buggy": new_key(), "limited": new_key()}
    text = (
        '[providers.mock]\ntype = "mock"\n'
        + "".join(key_table(n, k, tenant=f"tenant-{n}") for n, k in names.items())
        + "rate_limit = { requests_per_minute = 2 }\n"  # for the last key, "limited"
    )
    path = tmp_path / "in-process.toml"
    path.write_text(text)
    refuser = Refuser()
    app = GatewayApp(Config.load(path), plugins=[refuser])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    try:
        yield url, app, names, refuser
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_a_key_over_budget_gets_429_and_no_upstream_call(
    in_process: tuple[str, GatewayApp, dict[str, str], Refuser],
) -> None:
    url, app, names, refuser = in_process
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=names["broke"], max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="mock/echo", messages=HI)
    assert caught.value.response.headers["retry-after"] == "3600"
    assert caught.value.code == "budget_exceeded"
    assert "daily budget" in caught.value.message
    assert refuser.seen == [{"tenant": "tenant-broke", "key": "broke"}]
    assert app.kernel is not None
    mock = app.kernel.provider("mock")
    assert mock.history == []  # type: ignore[attr-defined]
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="mock/echo", messages=HI, stream=True)
    assert mock.history == []  # type: ignore[attr-defined]
    rich = openai.OpenAI(base_url=f"{url}/v1", api_key=names["rich"], max_retries=0)
    assert (
        rich.chat.completions.create(model="mock/echo", messages=HI).choices[0].message.content
        == "hi"
    )
    assert len(mock.history) == 1  # type: ignore[attr-defined]
    assert mock.history[0].metadata == {"tenant": "tenant-rich", "key": "rich"}  # type: ignore[attr-defined]


def test_an_unexpected_exception_is_a_500_with_a_request_id_and_no_traceback(
    in_process: tuple[str, GatewayApp, dict[str, str], Refuser],
) -> None:
    url, _, names, _ = in_process
    response = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "mock/echo", "messages": HI},
        headers={"authorization": f"Bearer {names['buggy']}"},
    )
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "api_error" and error["code"] == "internal_error"
    assert response.headers["x-request-id"] in error["message"]
    assert "Traceback" not in response.text and "a bug in a plugin" not in response.text


def test_the_app_runs_the_kernel_on_the_serving_loop_and_closes_it() -> None:
    closed: list[bool] = []

    class Closer:
        __llmkernel_name__ = "test-closer"

    app = GatewayApp(Config.load({}), plugins=[Closer()])

    async def lifespan() -> None:
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        closed.append(True)

    asyncio.run(lifespan())
    assert closed and app.kernel is not None


# ----------------------------------------------------------------------------- key limits


def test_a_key_budget_becomes_a_budgets_limit_for_that_key() -> None:
    from llmkernel_gateway.handoff import with_key_budgets
    from llmkernel_gateway.settings import load_settings

    config = Config.load(
        {
            "plugin": {
                "budgets": {"limits": [{"amount": 100, "period": "month"}]},
                "gateway": {
                    "keys": {
                        "team": {"hash": "sha256:" + "a" * 64, "budget": {"day": 5, "total": 50}},
                        "free": {"hash": "sha256:" + "b" * 64},
                    }
                },
            }
        }
    )
    keys = load_settings(config).key_list()
    limits = with_key_budgets(config, keys).plugin_settings("budgets")["limits"]
    assert limits == [
        {"amount": 100, "period": "month"},
        {"name": "key:team:day", "amount": 5, "period": "day", "key": "team"},
        {"name": "key:team:total", "amount": 50, "period": "total", "key": "team"},
    ]


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"budget": {"weekly": 5}}, "unknown budget period 'weekly'"),
        ({"budget": {"day": -1}}, "non-negative amount"),
        (
            {"rate_limit": {"requests_per_hour": 5}},
            "unknown rate_limit setting 'requests_per_hour'",
        ),
        ({"rate_limit": {"requests_per_minute": 0}}, "positive number"),
    ],
)
def test_wrong_key_limits_are_refused_naming_the_key(table: dict[str, Any], words: str) -> None:
    from llmkernel.errors import ConfigError
    from llmkernel_gateway.settings import load_settings

    config = Config.load(
        {"plugin": {"gateway": {"keys": {"team": {"hash": "sha256:" + "a" * 64, **table}}}}}
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert words in str(caught.value) and "'team'" in str(caught.value)


def test_a_key_budget_without_the_budgets_plugin_refuses_to_start(tmp_path: Path) -> None:
    from llmkernel_gateway.handoff import require_plugins

    config = tmp_path / "budget.toml"
    config.write_text(key_table("team", new_key()) + "budget = { day = 5 }\n")
    with pytest.raises(Exception, match="budgets plugin is not installed"):
        from llmkernel_gateway.settings import load_settings

        keys = load_settings(Config.load(config)).key_list()
        require_plugins(keys, ["mock", "openai"])
    require_plugins(keys, ["mock", "budgets"])  # with it, fine


def test_a_key_over_its_request_rate_gets_429_with_retry_after(
    in_process: tuple[str, GatewayApp, dict[str, str], Refuser],
) -> None:
    url, _, names, _ = in_process
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=names["limited"], max_retries=0)
    for _ in range(2):
        sdk.chat.completions.create(model="mock/echo", messages=HI)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="mock/echo", messages=HI)
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert "key:limited|requests: 2 per 60 s" in caught.value.message
    other = openai.OpenAI(base_url=f"{url}/v1", api_key=names["rich"], max_retries=0)
    other.chat.completions.create(model="mock/echo", messages=HI)  # other keys unaffected


def test_a_keys_rate_limit_becomes_a_ratelimit_rule_scoped_to_it(tmp_path: Path) -> None:
    """The key's ``rate_limit`` table is a ``[plugin.ratelimit]`` rule for that key,
    refusing at once; with the workers' shared directory the counts are one file."""
    from llmkernel_gateway.handoff import with_key_limits
    from llmkernel_gateway.settings import Key

    keys = [
        Key(name="k", digest="x", rate_limit={"requests_per_minute": 5, "tokens_per_minute": 900}),
        Key(name="free", digest="y"),
    ]
    config = Config.load({"providers": {"mock": {"type": "mock"}}})
    table = with_key_limits(config, keys, None).plugin_settings("ratelimit")
    assert table == {
        "learn_from_headers": False,  # nothing of the plugin the config did not ask for
        "limits": {
            "key:k": {
                "pattern": "*",
                "key": "k",
                "mode": "reject",
                "requests_per_minute": 5,
                "tokens_per_minute": 900,
            }
        },
    }
    shared = with_key_limits(config, keys, str(tmp_path)).plugin_settings("ratelimit")
    assert shared["store"] == "file" and shared["path"] == str(tmp_path / "ratelimit.buckets")
    own = Config.load({"plugin": {"ratelimit": {"limits": {"openai": {"requests_per_minute": 9}}}}})
    merged = with_key_limits(own, keys, None).plugin_settings("ratelimit")
    assert set(merged["limits"]) == {"openai", "key:k"} and "learn_from_headers" not in merged
    assert with_key_limits(config, keys[1:], None) is config  # nothing to add


def test_a_keys_rate_limit_without_the_ratelimit_plugin_refuses_to_start() -> None:
    from llmkernel_gateway.handoff import require_plugins
    from llmkernel_gateway.settings import Key

    keys = [Key(name="k", digest="x", rate_limit={"requests_per_minute": 5})]
    with pytest.raises(Exception, match="ratelimit plugin is not installed"):
        require_plugins(keys, ["mock", "budgets"])
    require_plugins(keys, ["mock", "ratelimit"])


def test_serve_with_two_workers_holds_a_keys_rate_limit_across_them(tmp_path: Path) -> None:
    key = new_key()
    config = (
        '[providers.mock]\ntype = "mock"\n'
        + key_table("limited", key)
        + "rate_limit = { requests_per_minute = 4 }\n"
    )
    run = tmp_path / "run"
    run.mkdir()
    gateway = Gateway(config, tmp_path, workers=2, env={"TMPDIR": str(run)})
    try:
        (shared,) = run.iterdir()  # the workers' private run directory
        assert stat.S_IMODE(shared.stat().st_mode) == 0o700
        statuses = []
        for _ in range(10):  # a new connection each: uvicorn spreads them over workers
            with httpx.Client() as client:
                answer = client.post(
                    f"{gateway.url}/v1/chat/completions",
                    headers={"authorization": f"Bearer {key}"},
                    json={"model": "mock/echo", "messages": HI},
                )
            statuses.append(answer.status_code)
        assert statuses.count(200) == 4, statuses
        assert statuses.count(429) == 6, statuses
        buckets = shared / "ratelimit.buckets"  # the ratelimit plugin's shared counts
        assert stat.S_IMODE(buckets.stat().st_mode) == 0o600
    finally:
        gateway.stop()
