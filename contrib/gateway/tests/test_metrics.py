"""``/metrics`` tells the whole story: retries, fallbacks, breaker state, refusals,
budgets, overhead, chunks, build info, process collectors; label values bounded
by the config under made-up model names (and ``/health`` stays small); every
worker's numbers in one scrape, the status page with the same totals; and
``promtool check metrics`` accepts the output."""

from __future__ import annotations

import os
import random
import shutil
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmkernel_http.testing.fake_server import FakeResponse

from .conftest import UPSTREAM_KEY_ENV, Gateway, Upstream, key_table
from .test_sdk import client

HI = [{"role": "user", "content": "hi"}]
PROMTOOL = shutil.which("promtool") or (
    "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
)
IN_CI = os.environ.get("CI") == "true"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gateway: Gateway) -> str:
    response = httpx.get(f"{gateway.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def names_of(found: Samples) -> set[str]:
    return {name for name, _ in found}


def completion(text: str = "hello") -> FakeResponse:
    return FakeResponse.json_body(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini-2024-07-18",  # the dated id upstreams answer with
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
    )


def failing() -> FakeResponse:
    return FakeResponse.json_body(
        {"error": {"message": "boom", "type": "server_error"}}, status=500
    )


def config(upstream: Upstream, tmp: Path, extra: str = "") -> str:
    return f"""
[retry]
attempts = 2
initial_wait = 0
max_wait = 0
jitter = 0

[providers.mock]
type = "mock"

[providers.up]
type = "openai"
base_url = "{upstream.url}/v1"
api_key_env = "{UPSTREAM_KEY_ENV}"
models = ["gpt-4o-mini"]

[models]
fast = ["mock/echo"]
pair = ["up/gpt-4o-mini", "mock/echo"]

[prices."mock/echo"]
input = 1000
output = 1000

[plugin.ledger]
path = "{tmp / "ledger.db"}"

[plugin.routing.breaker]
failures = 4

[plugin.gateway]
public_metrics = true
request_timeout = 10.0
{extra}
"""


@pytest.fixture
def server(upstream: Upstream, tmp_path: Path) -> Iterator[Gateway]:
    gateway = Gateway(config(upstream, tmp_path), tmp_path)
    yield gateway
    gateway.stop()


def test_retries_fallbacks_breaker_state_and_overhead(server: Gateway, upstream: Upstream) -> None:
    sdk = client(server, "unused")
    upstream.answer(failing(), completion())  # one retry on the same deployment
    sdk.chat.completions.create(model="up/gpt-4o-mini", messages=HI)
    upstream.answer(failing())  # both attempts fail: the alias falls back to the mock
    answer = sdk.chat.completions.create(model="pair", messages=HI)
    assert answer.model == "mock/echo"
    found = samples(scrape(server))
    up = {"provider": "up", "model": "gpt-4o-mini"}
    assert value(found, "llmkernel_gateway_retries_total", **up) == 2
    assert value(found, "llmkernel_gateway_fallbacks_total", **up) == 1
    assert value(found, "llmkernel_gateway_attempts_total", **up, outcome="error") == 3
    assert value(found, "llmkernel_gateway_attempts_total", **up, outcome="ok") == 1
    # the request's labels name the deployment tried, never the upstream's dated id
    assert (
        value(
            found,
            "llmkernel_gateway_requests_total",
            route="chat",
            key="",
            status="200",
            **up,
        )
        == 1
    )
    assert value(found, "llmkernel_gateway_deployment_state", **up) == 0  # closed
    assert value(found, "llmkernel_gateway_overhead_seconds_count", route="chat") == 2
    overhead = value(found, "llmkernel_gateway_overhead_seconds_sum", route="chat")
    latency = sum(
        v
        for (n, labels), v in found.items()
        if n == "llmkernel_gateway_request_latency_seconds_sum" and ("route", "chat") in labels
    )
    assert 0 < overhead < latency
    upstream.answer(failing())
    for _ in range(2):  # two more failed attempts each: the breaker opens at 4 in a row
        with pytest.raises(openai.APIStatusError):
            sdk.chat.completions.create(model="up/gpt-4o-mini", messages=HI)
    found = samples(scrape(server))
    assert value(found, "llmkernel_gateway_deployment_state", **up) == 2  # open


def test_streams_count_time_per_chunk_and_first_token(server: Gateway) -> None:
    sdk = client(server, "unused")
    chunks = list(
        sdk.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "a b c d"}], stream=True
        )
    )
    assert len(chunks) >= 4
    found = samples(scrape(server))
    mock = {"provider": "mock", "model": "echo"}
    assert value(found, "llmkernel_gateway_time_per_output_chunk_seconds_count", **mock) >= 3
    assert value(found, "llmkernel_gateway_time_to_first_token_seconds_count", **mock) == 1
    assert value(found, "llmkernel_gateway_cost_today_usd", **mock) > 0


def test_build_info_process_and_python_collectors(server: Gateway) -> None:
    found = samples(scrape(server))
    names = names_of(found)
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"} <= names
    assert "python_gc_collections_total" in names
    (build,) = [labels for name, labels in found if name == "llmkernel_build_info"]
    build_labels = dict(build)
    assert build_labels["version"] and build_labels["gateway_version"]
    assert build_labels["python_version"].count(".") == 2
    plugins = {dict(labels)["name"] for name, labels in found if name == "llmkernel_plugin_info"}
    assert {"mock", "routing", "gateway"} <= plugins


def test_label_values_stay_bounded_under_random_model_names(
    upstream: Upstream, keys: dict[str, str], tmp_path: Path
) -> None:
    """1,000 made-up model names from a key holder (the mock answers any name; the
    upstream refuses them): the series, the status page and /health do not grow."""
    text = config(upstream, tmp_path) + key_table("team", keys["team"])
    server = Gateway(text, tmp_path)
    try:
        upstream.answer(
            FakeResponse.json_body(
                {"error": {"message": "model not found", "type": "invalid_request_error"}},
                status=404,
            )
        )
        sdk = client(server, keys["team"])
        sdk.chat.completions.create(model="fast", messages=HI)
        before = len(samples(scrape(server)))
        team = {"authorization": f"Bearer {keys['team']}"}  # the details: a key's
        health_before = len(httpx.get(f"{server.url}/health", headers=team).content)
        rng = random.Random(26)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i in range(1000):
                name = "".join(rng.choices(string.ascii_lowercase + string.digits, k=16))
                target = ("mock", "up", "nosuch")[i % 3]
                http.post(
                    "/v1/chat/completions",
                    headers={"authorization": f"Bearer {keys['team']}"},
                    json={"model": f"{target}/{name}", "messages": HI},
                )
        text = scrape(server)
        found = samples(text)
        health = httpx.get(f"{server.url}/health", headers=team)
        status = httpx.get(
            f"{server.url}/status.json", headers={"authorization": f"Bearer {keys['team']}"}
        ).json()
    finally:
        server.stop()
    labels = {v for (_, ls) in found for k, v in ls if k in ("model", "provider")}
    assert labels <= {"mock", "up", "echo", "gpt-4o-mini", "other", "fast", "pair", ""}, labels
    assert len(found) - before < 150  # a fixed set of new series (kinds, statuses, buckets)
    assert len(health.content) < health_before + 400
    assert set(health.json()["deployments"]) <= {"mock/echo", "up/gpt-4o-mini", "other"}
    assert set(status["deployments"]) <= {
        "mock/echo",
        "mock/other",
        "up/other",
        "other/other",
        "up/gpt-4o-mini",
    }
    assert (
        value(
            found, "llmkernel_gateway_attempts_total", provider="mock", model="other", outcome="ok"
        )
        == 334
    )


def test_budget_remaining_and_refusals_by_scope(
    upstream: Upstream, keys: dict[str, str], tmp_path: Path
) -> None:
    text = (
        config(upstream, tmp_path)
        + key_table("team", keys["team"])
        + "budget = { day = 100.0 }\n"
        + key_table("admin", keys["admin"])
        + "budget = { day = 0.000001 }\n"
    )
    server = Gateway(text, tmp_path)
    try:
        client(server, keys["team"]).chat.completions.create(model="mock/echo", messages=HI)
        with pytest.raises(openai.RateLimitError):
            client(server, keys["admin"]).chat.completions.create(
                model="mock/echo", messages=[{"role": "user", "content": "a long prompt " * 50}]
            )
        found = samples(scrape(server))
    finally:
        server.stop()
    limit = {"limit": "key:team:day", "period": "day", "scope": ""}
    remaining = value(found, "llmkernel_gateway_budget_remaining_usd", **limit)
    assert 99.9 < remaining < 100  # the mock's tokens at $0.001 each went out of it
    assert (
        value(found, "llmkernel_gateway_budget_limit_usd", limit="key:team:day", period="day")
        == 100
    )
    assert (
        value(found, "llmkernel_gateway_refusals_total", reason="budget", scope="key:admin:day")
        == 1
    )


@pytest.mark.skipif(
    PROMTOOL is None and not IN_CI,
    reason="promtool is not installed (Debian package prometheus: apt-get install prometheus)",
)
def test_promtool_accepts_the_exposition(server: Gateway, upstream: Upstream) -> None:
    assert PROMTOOL is not None, "CI=true: promtool must be installed (apt-get install prometheus)"
    sdk = client(server, "unused")
    sdk.chat.completions.create(model="fast", messages=HI)
    list(sdk.chat.completions.create(model="fast", messages=HI, stream=True))
    upstream.answer(failing())
    with pytest.raises(openai.APIStatusError):
        sdk.chat.completions.create(model="up/gpt-4o-mini", messages=HI)
    text = scrape(server)
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""  # no lint warning


def test_every_worker_in_one_scrape_and_the_status_page_agrees(
    upstream: Upstream, tmp_path: Path
) -> None:
    server = Gateway(config(upstream, tmp_path), tmp_path, workers=2)
    try:
        pids = set()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(40):
                answer = http.post("/v1/chat/completions", json={"model": "fast", "messages": HI})
                assert answer.status_code == 200
            for _ in range(20):  # new connections reach both workers
                with httpx.Client(base_url=server.url, timeout=30) as fresh:
                    pids.add(fresh.get("/health").json()["pid"])
        assert len(pids) == 2
        totals = set()
        for _ in range(6):  # whichever worker answers the scrape, the same totals
            with httpx.Client(base_url=server.url, timeout=30) as fresh:
                found = samples(fresh.get("/metrics").text)
                status = fresh.get("/status.json").json()
            totals.add(
                value(
                    found,
                    "llmkernel_gateway_requests_total",
                    route="chat",
                    provider="mock",
                    model="echo",
                    key="",
                    status="200",
                )
            )
            assert status["deployments"]["mock/echo"]["requests"] == 40
        assert totals == {40.0}
        assert value(found, "process_max_fds") > 0
        assert value(found, "process_resident_memory_bytes") > 0
    finally:
        server.stop()
