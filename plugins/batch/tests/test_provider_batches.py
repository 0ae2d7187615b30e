"""Provider batches through the CLI against fake servers on 127.0.0.1 that speak
each provider's batch API as its reference describes it (files, create, poll,
results, errors, expired, cancel); results priced at batch rates and recorded in
the ledger."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmkernel_cli.shell import main
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, RecordedRequest

KEY = "sk-test-secret-0123456789"
EXPIRED = "This request could not be executed before the completion window expired."


def write_input(path: Path, model: str, n: int = 3) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({
                "custom_id": f"req-{i}", "model": model, "max_tokens": 50,
                "messages": [{"role": "system", "content": "be brief"},
                             {"role": "user", "content": f"question {i}"}],
            }) + "\n")  # fmt: skip
    return path


def config(tmp_path: Path, provider: str, ptype: str, url: str, **extra: Any) -> Path:
    ledger = tmp_path / "ledger.db"
    text = f"""
[providers.{provider}]
type = "{ptype}"
base_url = "{url}"
api_key_env = "BATCH_TEST_KEY"

[plugin.ledger]
path = "{ledger}"
"""
    for key, price in extra.items():
        text += f'\n[prices."{key}"]\ninput = "{price[0]}"\noutput = "{price[1]}"\n'
    path = tmp_path / "llmkernel.toml"
    path.write_text(text)
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    assert KEY not in captured.out and KEY not in captured.err
    return code, captured.out, captured.err


def results(path: Path) -> dict[str, dict[str, Any]]:
    return {x["custom_id"]: x for x in map(json.loads, path.read_text().splitlines())}


def router(routes: dict[tuple[str, str], Callable[[RecordedRequest], FakeResponse]]) -> Any:
    def handle(request: RecordedRequest) -> FakeResponse:
        handler = routes.get((request.method, request.path))
        if handler is None:
            return FakeResponse.json_body({"error": {"message": "no route"}}, status=404)
        return handler(request)

    return handle


# --------------------------------------------------------------------------- OpenAI


class FakeOpenAI:
    """``/v1/files``, ``/v1/batches``: a batch that validates, runs, then ends
    ``completed`` (output and error files) or ``expired``."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.status = "validating"
        self.lines: list[dict[str, Any]] = []
        self.expire_after = 10**9
        server.default = router({
            ("POST", "/v1/files"): self.upload,
            ("POST", "/v1/batches"): self.create,
            ("GET", "/v1/batches/batch_abc123"): lambda r: self.batch(),
            ("POST", "/v1/batches/batch_abc123/cancel"): self.cancel,
            ("GET", "/v1/files/file-out/content"): lambda r: self.content("out"),
            ("GET", "/v1/files/file-err/content"): lambda r: self.content("err"),
        })  # fmt: skip

    def upload(self, request: RecordedRequest) -> FakeResponse:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["content-type"].startswith("multipart/form-data")
        body = request.body.decode()
        assert 'name="purpose"' in body and "\r\nbatch\r\n" in body
        assert 'filename="llmkernel-batch.jsonl"' in body
        self.lines = [json.loads(x) for x in body.splitlines() if x.startswith('{"custom_id"')]
        return FakeResponse.json_body({
            "id": "file-in", "object": "file", "bytes": len(body), "created_at": 1764460800,
            "filename": "llmkernel-batch.jsonl", "purpose": "batch",
        })  # fmt: skip

    def create(self, request: RecordedRequest) -> FakeResponse:
        data = request.json()
        assert data["input_file_id"] == "file-in"
        assert data["endpoint"] == "/v1/chat/completions"
        assert data["completion_window"] == "24h"
        return self.batch()

    def batch(self) -> FakeResponse:
        done = self.status in ("completed", "expired")
        return FakeResponse.json_body({
            "id": "batch_abc123", "object": "batch", "endpoint": "/v1/chat/completions",
            "errors": None, "input_file_id": "file-in", "completion_window": "24h",
            "status": self.status,
            "output_file_id": "file-out" if done else None,
            "error_file_id": "file-err" if done else None,
            "created_at": 1764460800,
            "request_counts": {"total": len(self.lines), "completed": 0, "failed": 0},
            "metadata": {},
        })  # fmt: skip

    def cancel(self, request: RecordedRequest) -> FakeResponse:
        self.status = "cancelling"
        return self.batch()

    def content(self, which: str) -> FakeResponse:
        out, err = [], []
        for i, line in enumerate(self.lines):
            cid = line["custom_id"]
            if i >= self.expire_after:
                err.append({"id": f"batch_req_{i}", "custom_id": cid, "response": None,
                            "error": {"code": "batch_expired",
                                      "message": EXPIRED}})  # fmt: skip
            elif i == 1:
                err.append({"id": f"batch_req_{i}", "custom_id": cid, "error": None, "response": {
                    "status_code": 400, "request_id": "req_x",
                    "body": {"error": {"message": "Invalid value for 'temperature'",
                              "type": "invalid_request_error", "code": None}}}})  # fmt: skip
            else:
                body = line["body"]
                assert body["model"] == "gpt-4o-mini"
                out.append({"id": f"batch_req_{i}", "custom_id": cid, "error": None, "response": {
                    "status_code": 200, "request_id": f"req_{i}",
                    "body": {"id": f"chatcmpl-{i}", "object": "chat.completion",
                             "model": "gpt-4o-mini-2024-07-18",
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant",
                                                      "content": f"answer {i}"}}],
                             "usage": {"prompt_tokens": 1000, "completion_tokens": 500,
                                       "total_tokens": 1500,
                                       "prompt_tokens_details": {"cached_tokens": 0},
                                       "completion_tokens_details": {}}}}})  # fmt: skip
        rows = out if which == "out" else err
        return FakeResponse.text_body("".join(json.dumps(r) + "\n" for r in rows))


def test_openai_batch_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llmkernel_openai")
    pytest.importorskip("llmkernel_ledger")
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    with FakeServer() as server:
        fake = FakeOpenAI(server)
        cfg = config(tmp_path, "oa", "openai", f"{server.url}/v1", **{"oa/gpt-4o-mini": ("2", "8")})
        data = write_input(tmp_path / "in.jsonl", "oa/gpt-4o-mini")
        code, out, err = run(["-c", str(cfg), "batch", str(data), "--provider-batch"], capsys)
        assert code == 0 and out.strip() == "batch_abc123"
        assert "submitted 3 request(s) to oa/gpt-4o-mini" in err
        assert [x["body"]["messages"][0]["role"] for x in fake.lines] == ["system"] * 3

        fake.status = "in_progress"
        code, out, _ = run(["-c", str(cfg), "batch", "status", "batch_abc123"], capsys)
        assert "in_progress" in out and "oa/gpt-4o-mini" in out
        code, _, err = run(["-c", str(cfg), "batch", "results", "batch_abc123"], capsys)
        assert code == 1 and "still in_progress" in err

        fake.status = "completed"
        target = tmp_path / "out.jsonl"
        code, _, err = run(
            ["-c", str(cfg), "batch", "results", "batch_abc123", "--output", str(target)], capsys
        )
        got = results(target)
        assert set(got) == {"req-0", "req-1", "req-2"}
        assert got["req-0"]["response"]["text"] == "answer 0"
        # the config price has no batch discount: standard rates, and it says so
        assert got["req-0"]["response"]["batch_price"] is False
        assert Decimal(got["req-0"]["response"]["cost"]) == Decimal("0.006")
        assert got["req-1"]["status"] == "error"
        assert got["req-1"]["error"] == {
            "kind": "invalid_request", "message": "Invalid value for 'temperature'"
        }  # fmt: skip
        assert "2 ok, 1 failed" in err

        # collected again: the ledger keeps one row per answer
        run(["-c", str(cfg), "batch", "results", "batch_abc123", "--output", str(target)], capsys)
        from llmkernel_ledger.store import LedgerStore

        store = LedgerStore(tmp_path / "ledger.db")
        rows = {r["request_id"]: r for r in store.rows()}
        assert set(rows) == {"batch_abc123:req-0", "batch_abc123:req-1", "batch_abc123:req-2"}
        assert rows["batch_abc123:req-0"]["cost"] == "0.006"
        assert rows["batch_abc123:req-1"]["status"] == "error"
        store.close()

        code, out, _ = run(["-c", str(cfg), "batch", "list", "--json"], capsys)
        (listed,) = json.loads(out)
        assert listed["id"] == "batch_abc123" and listed["status"] == "completed"
        assert listed["collected"] is True


def test_openai_expired_and_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llmkernel_openai")
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    with FakeServer() as server:
        fake = FakeOpenAI(server)
        cfg = config(tmp_path, "oa", "openai", f"{server.url}/v1")
        data = write_input(tmp_path / "in.jsonl", "oa/gpt-4o-mini", n=4)
        run(["-c", str(cfg), "batch", str(data), "--provider-batch"], capsys)
        _, out, _ = run(["-c", str(cfg), "batch", "cancel", "batch_abc123"], capsys)
        assert "cancelling" in out
        assert server.requests_to("/v1/batches/batch_abc123/cancel")
        fake.status, fake.expire_after = "expired", 2
        _, out, err = run(["-c", str(cfg), "batch", "results", "batch_abc123"], capsys)
        got = {x["custom_id"]: x for x in map(json.loads, out.splitlines())}
        assert got["req-0"]["status"] == "ok"
        assert got["req-2"]["error"]["kind"] == "expired"
        assert got["req-3"]["error"]["kind"] == "expired"
        assert "expired" in err


def test_batch_prices_come_from_the_price_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("llmkernel_openai")
    prices = pytest.importorskip("llmkernel_prices")
    from llmkernel import Kernel
    from llmkernel.types import Usage
    from llmkernel_batch.provider import batch_price

    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    kernel = Kernel.from_config(
        {"providers": {"oa": {"type": "openai", "api_key_env": "BATCH_TEST_KEY"}}}
    )
    candidate = kernel.models.resolve("oa/gpt-4o-mini")[0]
    standard = prices.lookup("openai", "gpt-4o-mini")
    price, discounted = batch_price(kernel, candidate)
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert discounted is True
    assert price.cost(usage) == standard.cost(usage) * standard.batch_discount
    kernel.close()


# ------------------------------------------------------------------------ Anthropic


class FakeAnthropic:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.status = "in_progress"
        self.cancelled = False
        self.requests: list[dict[str, Any]] = []
        server.default = router({
            ("POST", "/v1/messages/batches"): self.create,
            ("GET", "/v1/messages/batches/msgbatch_01"): self.batch,
            ("POST", "/v1/messages/batches/msgbatch_01/cancel"): self.cancel,
            ("GET", "/v1/messages/batches/msgbatch_01/results"): self.results,
        })  # fmt: skip

    def check(self, request: RecordedRequest) -> None:
        assert request.headers["x-api-key"] == KEY
        assert request.headers["anthropic-version"] == "2023-06-01"

    def create(self, request: RecordedRequest) -> FakeResponse:
        self.check(request)
        self.requests = request.json()["requests"]
        return self.batch(request)

    def batch(self, request: RecordedRequest) -> FakeResponse:
        self.check(request)
        ended = self.status == "ended"
        return FakeResponse.json_body({
            "id": "msgbatch_01", "type": "message_batch", "processing_status": self.status,
            "request_counts": {"processing": 0 if ended else 3, "succeeded": 1, "errored": 1,
                               "canceled": 0, "expired": 1},
            "ended_at": "2026-11-30T10:00:00Z" if ended else None,
            "created_at": "2026-11-30T09:00:00Z", "expires_at": "2026-12-01T09:00:00Z",
            "archived_at": None,
            "cancel_initiated_at": "2026-11-30T09:30:00Z" if self.cancelled else None,
            "results_url": f"{self.server.url}/v1/messages/batches/msgbatch_01/results"
            if ended else None,
        })  # fmt: skip

    def cancel(self, request: RecordedRequest) -> FakeResponse:
        self.cancelled = True
        self.status = "canceling"
        return self.batch(request)

    def results(self, request: RecordedRequest) -> FakeResponse:
        self.check(request)
        ids = [r["custom_id"] for r in self.requests]
        rows = [
            {"custom_id": ids[0], "result": {"type": "succeeded", "message": {
                "id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": "Paris."}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 800, "cache_read_input_tokens": 200,
                          "cache_creation_input_tokens": 0, "output_tokens": 100}}}},
            {"custom_id": ids[1], "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": "invalid_request_error",
                                           "message": "max_tokens: too large"}}}},
            {"custom_id": ids[2], "result": {"type": "expired"}},
        ]  # fmt: skip
        return FakeResponse.text_body("".join(json.dumps(r) + "\n" for r in rows))


def test_anthropic_batch_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llmkernel_anthropic")
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    with FakeServer() as server:
        fake = FakeAnthropic(server)
        cfg = config(tmp_path, "an", "anthropic", server.url)
        data = write_input(tmp_path / "in.jsonl", "an/claude-haiku-4-5")
        _code, out, _ = run(["-c", str(cfg), "batch", str(data), "--provider-batch"], capsys)
        assert out.strip() == "msgbatch_01"
        params = fake.requests[0]["params"]
        assert params["model"] == "claude-haiku-4-5"
        assert params["system"] == "be brief"
        assert params["max_tokens"] == 50
        assert params["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "question 0"}]}
        ]
        _, out, _ = run(["-c", str(cfg), "batch", "status", "msgbatch_01"], capsys)
        assert "in_progress" in out
        fake.status = "ended"
        _, out, _ = run(["-c", str(cfg), "batch", "results", "msgbatch_01"], capsys)
        got = {x["custom_id"]: x for x in map(json.loads, out.splitlines())}
        ok = got["req-0"]["response"]
        assert ok["text"] == "Paris." and ok["finish_reason"] == "stop"
        assert ok["usage"]["input_tokens"] == 1000 and ok["usage"]["cached_input_tokens"] == 200
        assert got["req-1"]["error"] == {
            "kind": "invalid_request",
            "message": "max_tokens: too large",
        }
        assert got["req-2"]["error"]["kind"] == "expired"
        _, out, _ = run(["-c", str(cfg), "batch", "cancel", "msgbatch_01"], capsys)
        assert "cancelling" in out


def test_anthropic_refuses_custom_ids_it_does_not_allow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llmkernel_anthropic")
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    with FakeServer() as server:
        FakeAnthropic(server)
        cfg = config(tmp_path, "an", "anthropic", server.url)
        data = tmp_path / "in.jsonl"
        line = {"custom_id": "has space", "model": "an/claude-haiku-4-5",
                "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
        data.write_text(json.dumps(line) + "\n")
        code, _, err = run(["-c", str(cfg), "batch", str(data), "--provider-batch"], capsys)
        assert code == 1 and "'has space'" in err
        assert not server.requests


def test_anthropic_params_are_the_anthropic_plugins_chat_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The instance's settings and the line's structured output reach the batch as
    they reach a chat call: one converter, the anthropic plugin's."""
    pytest.importorskip("llmkernel_anthropic")
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    with FakeServer() as server:
        fake = FakeAnthropic(server)
        cfg = config(tmp_path, "an", "anthropic", server.url)
        cfg.write_text(cfg.read_text().replace(
            'api_key_env = "BATCH_TEST_KEY"',
            'api_key_env = "BATCH_TEST_KEY"\ncache_system = "1h"\ndefault_max_tokens = 1000',
        ))  # fmt: skip
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
        line = {"custom_id": "a", "model": "an/claude-haiku-4-5",
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "answer", "schema": schema}},
                "messages": [{"role": "system", "content": "be brief"},
                             {"role": "user", "content": "count"}]}  # fmt: skip
        data = tmp_path / "in.jsonl"
        data.write_text(json.dumps(line) + "\n")
        code, _, err = run(["-c", str(cfg), "batch", str(data), "--provider-batch"], capsys)
        assert code == 0, err
        params = fake.requests[0]["params"]
        assert params["max_tokens"] == 1000
        assert params["system"] == [
            {
                "type": "text",
                "text": "be brief",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ]
        assert params["tools"][-1]["name"] == "answer"
        assert params["tools"][-1]["input_schema"] == schema
        assert params["tool_choice"] == {"type": "tool", "name": "answer"}


def test_a_line_the_converter_refuses_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llmkernel_gemini")
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    with FakeServer() as server:
        FakeGemini(server)
        cfg = config(tmp_path, "gm", "gemini", server.url)
        # a tool result answering no call: Gemini needs the function's name
        line = {"custom_id": "a", "model": "gm/gemini-2.5-flash",
                "messages": [{"role": "user", "content": "x"},
                             {"role": "tool", "tool_call_id": "c1", "content": "42"}]}  # fmt: skip
        data = tmp_path / "in.jsonl"
        data.write_text(json.dumps(line) + "\n")
        code, _, err = run(["-c", str(cfg), "batch", str(data), "--provider-batch"], capsys)
        assert code == 1 and "line 1" in err and "function name" in err
        assert not server.requests


# --------------------------------------------------------------------------- Gemini


class FakeGemini:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.state = "BATCH_STATE_PENDING"
        self.requests: list[dict[str, Any]] = []
        self.echo_keys = True
        server.default = router({
            ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent"): self.create,
            ("GET", "/v1beta/batches/b123"): self.get,
            ("POST", "/v1beta/batches/b123:cancel"): self.cancel,
        })  # fmt: skip

    def operation(self) -> dict[str, Any]:
        meta = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": "models/gemini-2.5-flash", "displayName": "llmkernel",
            "name": "batches/b123", "state": self.state,
            "batchStats": {"requestCount": str(len(self.requests))},
        }  # fmt: skip
        op: dict[str, Any] = {"name": "batches/b123", "metadata": meta}
        if self.state == "BATCH_STATE_SUCCEEDED":
            op["done"] = True
            entries: list[dict[str, Any]] = []
            for i, r in enumerate(self.requests):
                key = {"metadata": {"key": r["metadata"]["key"]}} if self.echo_keys else {}
                if i == 1:
                    entries.append({"error": {"code": 400, "message": "bad request",
                                              "status": "INVALID_ARGUMENT"}, **key})  # fmt: skip
                else:
                    entries.append({"response": {
                        "candidates": [{"content": {"role": "model",
                                                    "parts": [{"text": f"gemini {i}"}]},
                                        "finishReason": "STOP"}],
                        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                                          "thoughtsTokenCount": 3, "totalTokenCount": 18},
                        "modelVersion": "gemini-2.5-flash"}, **key})  # fmt: skip
            op["response"] = {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1main."
                "GenerateContentBatchOutput",
                "inlinedResponses": {"inlinedResponses": entries},
            }  # fmt: skip
        return op

    def create(self, request: RecordedRequest) -> FakeResponse:
        assert request.headers["x-goog-api-key"] == KEY
        assert "key=" not in request.target
        batch = request.json()["batch"]
        assert batch["display_name"]
        self.requests = batch["input_config"]["requests"]["requests"]
        return FakeResponse.json_body(self.operation())

    def get(self, request: RecordedRequest) -> FakeResponse:
        return FakeResponse.json_body(self.operation())

    def cancel(self, request: RecordedRequest) -> FakeResponse:
        self.state = "BATCH_STATE_CANCELLED"
        return FakeResponse.json_body({})


@pytest.mark.parametrize("echo_keys", [True, False])
def test_gemini_batch_round_trip(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    echo_keys: bool,
) -> None:
    pytest.importorskip("llmkernel_gemini")
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    with FakeServer() as server:
        fake = FakeGemini(server)
        fake.echo_keys = echo_keys  # answers matched by key, else by position
        cfg = config(tmp_path, "gm", "gemini", server.url)
        data = write_input(tmp_path / "in.jsonl", "gm/gemini-2.5-flash")
        _code, out, _ = run(["-c", str(cfg), "batch", str(data), "--provider-batch"], capsys)
        assert out.strip() == "batches/b123"
        first = fake.requests[0]
        assert first["metadata"] == {"key": "req-0"}
        assert first["request"]["systemInstruction"] == {"parts": [{"text": "be brief"}]}
        assert first["request"]["contents"] == [{"role": "user", "parts": [{"text": "question 0"}]}]
        assert first["request"]["generationConfig"] == {"maxOutputTokens": 50}
        _, out, _ = run(["-c", str(cfg), "batch", "status", "batches/b123"], capsys)
        assert "in_progress" in out
        fake.state = "BATCH_STATE_SUCCEEDED"
        _, out, _ = run(["-c", str(cfg), "batch", "results", "batches/b123"], capsys)
        got = {x["custom_id"]: x for x in map(json.loads, out.splitlines())}
        assert got["req-0"]["response"]["text"] == "gemini 0"
        assert got["req-2"]["response"]["text"] == "gemini 2"
        assert got["req-0"]["response"]["usage"]["output_tokens"] == 8
        assert got["req-1"]["error"] == {"kind": "invalid_request", "message": "bad request"}


def test_gemini_cancel_and_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llmkernel_gemini")
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    with FakeServer() as server:
        fake = FakeGemini(server)
        cfg = config(tmp_path, "gm", "gemini", server.url)
        data = write_input(tmp_path / "in.jsonl", "gm/gemini-2.5-flash", n=2)
        run(["-c", str(cfg), "batch", str(data), "--provider-batch"], capsys)
        _, out, _ = run(["-c", str(cfg), "batch", "cancel", "batches/b123"], capsys)
        assert "cancelled" in out
        fake.state = "BATCH_STATE_EXPIRED"
        _, out, err = run(["-c", str(cfg), "batch", "results", "batches/b123"], capsys)
        got = [json.loads(x) for x in out.splitlines()]
        assert [x["error"]["kind"] for x in got] == ["missing", "missing"]
        assert "expired" in err


def test_unknown_batch_id_and_missing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llmkernel_openai")
    monkeypatch.delenv("BATCH_TEST_KEY", raising=False)
    cfg = config(tmp_path, "oa", "openai", "http://127.0.0.1:9/v1")
    code, _, err = run(["-c", str(cfg), "batch", "status", "batch_nope"], capsys)
    assert code == 2 and "batch_nope" in err
    data = write_input(tmp_path / "in.jsonl", "oa/gpt-4o-mini")
    code, _, err = run(["-c", str(cfg), "batch", str(data), "--provider-batch"], capsys)
    assert code == 2 and "BATCH_TEST_KEY" in err


def test_submit_with_wait_polls_until_done_and_writes_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llmkernel_openai")
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    with FakeServer() as server:
        fake = FakeOpenAI(server)
        polls: list[str] = []

        def poll(request: RecordedRequest) -> FakeResponse:
            polls.append(fake.status)
            fake.status = "completed" if len(polls) >= 3 else "in_progress"
            return fake.batch()

        server.default = router({
            ("POST", "/v1/files"): fake.upload,
            ("POST", "/v1/batches"): fake.create,
            ("GET", "/v1/batches/batch_abc123"): poll,
            ("GET", "/v1/files/file-out/content"): lambda r: fake.content("out"),
            ("GET", "/v1/files/file-err/content"): lambda r: fake.content("err"),
        })  # fmt: skip
        cfg = config(tmp_path, "oa", "openai", f"{server.url}/v1")
        data = write_input(tmp_path / "in.jsonl", "oa/gpt-4o-mini")
        target = tmp_path / "out.jsonl"
        args = ["-c", str(cfg), "batch", str(data), "--provider-batch", "--wait"]
        code, out, _ = run([*args, "--poll-interval", "0.01", "--output", str(target)], capsys)
        assert out.splitlines()[0] == "batch_abc123"
        assert len(polls) >= 3
        assert code == 1  # one of the three failed
        assert set(results(target)) == {"req-0", "req-1", "req-2"}
