"""What a stranger can send a running gateway, with raw sockets: endless headers,
slowloris, too many connections, deep JSON, huge bodies, broken HTTP; and what a
broken upstream sends back (a line break in ``model``, a lone surrogate, a dead
port). Every answer is the API's JSON error, and the server stays small."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmkernel_gateway.keys import new_key
from llmkernel_http.testing.fake_server import FakeResponse

from .conftest import Gateway, Upstream, base_config, free_port, key_table

HI = [{"role": "user", "content": "hi"}]
LIMITS = """
header_timeout = 2.0
idle_timeout = 2.0
max_connections = 1900
max_header_bytes = 16384
max_json_depth = 32
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connect(gateway: Gateway, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (or the socket's timeout)."""
    parts = []
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            parts.append(chunk)
    return b"".join(parts)


def answer(data: bytes) -> tuple[int, dict[str, bytes], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
    return int(lines[0].split(b" ")[1]), headers, body


def json_error(data: bytes) -> tuple[int, dict[str, Any]]:
    status, headers, body = answer(data)
    assert headers[b"content-type"] == b"application/json", data[:300]
    return status, json.loads(body)["error"]


@pytest.fixture(scope="module")
def hardened(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with short timeouts and small limits, the mock and the fake upstream."""
    config = base_config(upstream.url) + LIMITS
    server = Gateway(config, tmp_path_factory.mktemp("hardened"))
    yield server
    server.stop()


# ---------------------------------------------------------------------- a connection without a key


def test_endless_headers_get_431_and_the_server_stays_small(hardened: Gateway) -> None:
    before = rss_kib(hardened.process.pid)
    sent = 0
    sock = connect(hardened)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n")
    line = b"x-endless: " + b"a" * 1000 + b"\r\n"
    with contextlib.suppress(OSError):  # the server closes while we still send
        while sent < 200 * 1024 * 1024:  # 200 MB of headers, or until refused
            sock.sendall(line * 64)
            sent += len(line) * 64
    data = read_all(sock)
    sock.close()
    assert sent < 50 * 1024 * 1024  # refused long before the end
    status, error = json_error(data)
    assert status == 431 and "max_header_bytes" in error["message"]
    assert rss_kib(hardened.process.pid) - before < 4 * 1024  # a few MB at most
    assert httpx.get(f"{hardened.url}/health").status_code == 200


def test_slowloris_connections_are_closed_after_the_header_timeout(hardened: Gateway) -> None:
    socks = []
    try:
        for _ in range(1500):
            sock = connect(hardened)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n")
            socks.append(sock)
        opened = time.monotonic()
        # the server still answers others meanwhile
        assert httpx.get(f"{hardened.url}/health", timeout=10).status_code == 200
        for sock in socks:  # one more header each second, as slowloris does
            with contextlib.suppress(OSError):
                sock.sendall(b"x-slow: 1\r\n")
        closed = 0
        for sock in socks:
            sock.settimeout(max(0.1, opened + 2.0 + 8.0 - time.monotonic()))
            data = read_all(sock)
            if data:
                status, error = json_error(data)
                assert status == 408 and "header_timeout" in error["message"]
                closed += 1
        elapsed = time.monotonic() - opened
    finally:
        for sock in socks:
            sock.close()
    assert closed == 1500
    assert elapsed < 2.0 + 8.0  # all within the timeout, with a busy machine's slack


def test_a_body_that_stops_arriving_is_408_after_the_idle_timeout(hardened: Gateway) -> None:
    sock = connect(hardened)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\ncontent-type: application/json\r\n"
        b'content-length: 500\r\n\r\n{"model": "mock/echo", '
    )
    started = time.monotonic()
    data = read_all(sock)
    sock.close()
    status, error = json_error(data)
    assert status == 408 and "idle_timeout" in error["message"]
    assert 1.5 < time.monotonic() - started < 10


def test_too_many_header_fields_is_431(hardened: Gateway) -> None:
    sock = connect(hardened)
    fields = b"".join(b"x-field-%d: 1\r\n" % i for i in range(120))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n" + fields + b"\r\n")
    status, error = json_error(read_all(sock))
    sock.close()
    assert status == 431 and "121 header fields" in error["message"]


def test_connections_past_the_bound_are_closed_at_once(upstream: Upstream, tmp_path: Path) -> None:
    server = Gateway(base_config(upstream.url) + "max_connections = 20\n", tmp_path)
    held = []
    try:
        held = [connect(server) for _ in range(20)]
        time.sleep(0.3)
        extra = connect(server)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        extra.settimeout(5)
        assert read_all(extra) == b""  # closed before anything was read
        extra.close()
        for sock in held:
            sock.close()
        held = []
        time.sleep(0.3)
        assert httpx.get(f"{server.url}/health").status_code == 200  # room again
    finally:
        for sock in held:
            sock.close()
        server.stop()
    assert "gateway.connections_full" in server.log


def test_malformed_http_gets_the_json_error(hardened: Gateway) -> None:
    sock = connect(hardened)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\nno colon here\r\n\r\n")
    status, error = json_error(read_all(sock))
    sock.close()
    assert status == 400 and "malformed HTTP request" in error["message"]


# ---------------------------------------------------------------------- bodies


def post(gateway: Gateway, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )


def test_json_deeper_than_the_limit_is_a_400_naming_the_setting(
    upstream: Upstream, tmp_path: Path
) -> None:
    server = Gateway(
        base_config(upstream.url).replace("max_body_bytes = 4096", "max_body_bytes = 1048576")
        + "max_json_depth = 32\n",
        tmp_path,
    )
    try:
        for depth in (100_000, 33):
            nested = b"[" * depth + b"]" * depth
            body = b'{"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}], '
            body += b'"metadata": ' + nested + b"}"
            refused = post(server, body)
            assert refused.status_code == 400, depth
            error = refused.json()["error"]
            assert (
                "deeper than 32 levels" in error["message"] and "max_json_depth" in error["message"]
            )
        fine = b'{"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}], '
        fine += b'"metadata": ' + b"[" * 20 + b"]" * 20 + b"}"
        assert post(server, fine).status_code == 200
    finally:
        server.stop()


def test_a_huge_body_is_413_and_the_connection_ends(hardened: Gateway) -> None:
    sock = connect(hardened)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\ncontent-type: application/json\r\n"
        b"content-length: 1073741824\r\n\r\n" + b"x" * 65536
    )
    data = read_all(sock)  # the server answers and closes: no gigabyte is read
    sock.close()
    status, error = json_error(data)
    assert status == 413 and "max_body_bytes" in error["message"]
    assert answer(data)[1][b"connection"] == b"close"
    chunked = post(hardened, b"[" + b"1," * 5000 + b"1]")
    assert chunked.status_code == 413 and chunked.json()["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------- what upstreams send back


def _completion(model: str, content: str = "fine", prompt_tokens: int = 3) -> FakeResponse:
    return FakeResponse.json_body(
        {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 1,
                "total_tokens": prompt_tokens + 1,
            },
        }
    )


def test_a_line_break_in_the_upstreams_model_is_never_a_header_or_a_500(
    hardened: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.answer(_completion("gpt-4o-mini\r\nset-cookie: stolen=1", prompt_tokens=4711))
    reply = post(hardened, json.dumps({"model": "up/gpt-4o-mini", "messages": HI}).encode())
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-llmkernel-model"] == "gpt-4o-miniset-cookie: stolen=1"
    assert "set-cookie" not in reply.headers
    assert reply.json()["model"] == "up/gpt-4o-mini\r\nset-cookie: stolen=1"  # JSON-escaped
    # the answer reached the client, so the ledger's "ok" is true: it was written. The
    # ledger is the session's private one (never the developer's ~/.local/share)
    ledger = Path(hardened.env["XDG_DATA_HOME"]) / "llmkernel" / "ledger.db"
    assert ledger.is_relative_to(os.environ["PYTEST_LLMKERNEL_PRIVATE_HOME"])
    assert ledger_status(ledger, input_tokens=4711) == "ok"


def ledger_status(path: Path, *, input_tokens: int) -> str:
    """The status of the ledger row with that many input tokens."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists():
            with contextlib.closing(sqlite3.connect(path)) as db:
                row = db.execute(
                    "SELECT status FROM requests WHERE input_tokens = ? ORDER BY id DESC LIMIT 1",
                    (input_tokens,),
                ).fetchone()
            if row:
                return str(row[0])
        time.sleep(0.1)
    raise AssertionError(f"no ledger row with {input_tokens} input tokens in {path}")


def test_a_lone_surrogate_from_the_upstream_is_still_valid_json(
    hardened: Gateway, upstream: Upstream
) -> None:
    upstream.answer(
        FakeResponse(
            status=200,
            headers={"content-type": "application/json"},
            body=json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "half \\ud800 a pair"},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
            .replace("\\\\ud800", "\\ud800")
            .encode(),
        )
    )
    reply = post(hardened, json.dumps({"model": "up/gpt-4o-mini", "messages": HI}).encode())
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "half \ud800 a pair"


def test_a_dead_upstream_is_a_502_never_a_429_or_a_bare_503(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there
    config = f"""
[retry]
attempts = 2

[providers.gone]
type = "openai"
base_url = "http://127.0.0.1:{dead}/v1"
api_key_required = false
models = ["gpt-4o-mini"]
"""
    server = Gateway(config, tmp_path)
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    statuses, retry_afters, messages = [], [], []
    try:
        for _ in range(8):
            with pytest.raises(openai.APIStatusError) as caught:
                sdk.chat.completions.create(model="gone/gpt-4o-mini", messages=HI)
            statuses.append(caught.value.status_code)
            retry_afters.append(caught.value.response.headers.get("retry-after"))
            messages.append(caught.value.message)
    finally:
        server.stop()
    assert statuses == [502] * 8, statuses
    assert all(r is not None and int(r) > 0 for r in retry_afters[-4:])  # once it is open
    assert "circuit breaker open" in messages[-1]
    assert "last: NetworkError" in messages[-1]  # what the upstream did is not lost


# ---------------------------------------------------------------------- streamed cost


def test_a_streamed_answer_reports_its_cost_in_the_usage_chunk_and_a_trailer(
    hardened: Gateway,
) -> None:
    sdk = openai.OpenAI(base_url=f"{hardened.url}/v1", api_key="unused", max_retries=0)
    chunks = list(
        sdk.chat.completions.create(
            model="mock/echo", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and usage.model_extra is not None
    assert usage.model_extra["cost"] == 0.0  # the mock is free: priced at zero, not unpriced
    sock = connect(hardened)
    body = json.dumps({"model": "mock/echo", "messages": HI, "stream": True}).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nTE: trailers\r\n"
        b"connection: close\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body) + body
    )
    data = read_all(sock)
    sock.close()
    status, headers, rest = answer(data)
    assert status == 200 and headers[b"trailer"] == b"x-llmkernel-cost"
    assert headers[b"transfer-encoding"] == b"chunked"
    assert rest.endswith(b"\r\n0\r\nx-llmkernel-cost: 0\r\n\r\n")
    # without TE: trailers, no trailer and no Trailer header
    with (
        httpx.Client() as plain,
        plain.stream(
            "POST",
            f"{hardened.url}/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
        ) as streamed,
    ):
        assert "trailer" not in streamed.headers
        assert streamed.read().endswith(b"data: [DONE]\n\n")


# ---------------------------------------------------------------------- logs of several workers


def test_two_workers_write_every_access_log_line_and_nothing_on_stdout(
    upstream: Upstream, tmp_path: Path
) -> None:
    key = new_key()
    upstream.answer(FakeResponse.json_body({"error": {"message": "try again"}}, status=500))
    config = base_config(upstream.url).replace("attempts = 1", "attempts = 2") + key_table(
        "team", key
    )
    server = Gateway(config, tmp_path, workers=2)
    sent = 60
    try:
        for i in range(sent):
            with httpx.Client() as fresh:  # a new connection each: both workers serve
                fresh.post(
                    f"{server.url}/v1/chat/completions",
                    headers={"authorization": f"Bearer {key}", "x-request-id": f"req-{i}"},
                    json={"model": "mock/echo" if i % 10 else "up/gpt-4o-mini", "messages": HI},
                )
        deadline = time.monotonic() + 10
        while server.log.count('"gateway.request"') < sent and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log.splitlines() if line.startswith("{")]
    served = [line for line in lines if line["event"] == "gateway.request"]
    assert sorted(line["request_id"] for line in served) == sorted(f"req-{i}" for i in range(sent))
    assert len({line.get("pid") or 0 for line in lines}) >= 1
    assert any(line["event"] == "llmkernel.retry.scheduled" for line in lines)  # on stderr
    assert server.out == ""  # nothing on stdout: no retry warning there
