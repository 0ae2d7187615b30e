"""The conversation log through the real entry point: recorded, listed, searched,
on and off; continue sends the earlier turns (checked at a fake OpenAI upstream)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llmkernel_mock")


def data_dir() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "llmkernel"


def test_each_chat_is_logged_with_usage_cost_and_a_private_file(cli: Any) -> None:
    cli.ok("chat", "first question", "-m", "mock/echo", "-s", "be brief")
    cli.ok("chat", "about cheesecake", "-m", "mock/chat", "--no-stream")
    path = data_dir() / "logs.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cli.ok("logs", "path").stdout.strip() == str(path)
    rows = json.loads(cli.ok("logs", "--json").stdout)
    assert [r["prompt"] for r in rows] == ["first question", "about cheesecake"]
    first, second = rows
    assert first["system"] == "be brief" and first["response"] == "first question"
    assert first["provider"] == "mock" and first["resolved_model"] == "echo"
    assert first["input_tokens"] > 0 and first["output_tokens"] > 0
    assert first["cost"] is not None and first["attempts"] == 1 and first["latency"] > 0
    assert second["conversation_id"] != first["conversation_id"], "a new chat, a new conversation"
    text = cli.ok("logs").stdout
    assert "### Prompt\n\nabout cheesecake" in text and "### System\n\nbe brief" in text
    assert text.rstrip().endswith("2 entries, total $0")


def test_search_model_filter_and_count(cli: Any) -> None:
    for prompt in ("pelicans at dawn", "a recipe for cheesecake", "more pelicans please"):
        cli.ok("chat", prompt, "-m", "mock/echo")
    cli.ok("chat", "cheesecake again", "-m", "mock/chat")
    found = json.loads(cli.ok("logs", "-q", "pelicans", "--json").stdout)
    assert sorted(r["prompt"] for r in found) == ["more pelicans please", "pelicans at dawn"]
    assert json.loads(cli.ok("logs", "-q", "nothing-like-this", "--json").stdout) == []
    # a query with FTS syntax in it is searched as words, not refused
    assert cli.ok("logs", "-q", 'cheese" OR (', "--json").returncode == 0
    chat = json.loads(cli.ok("logs", "-m", "mock/chat", "-n", "0", "--json").stdout)
    assert [r["prompt"] for r in chat] == ["cheesecake again"]
    last_two = json.loads(cli.ok("logs", "-n", "2", "--json").stdout)
    assert [r["prompt"] for r in last_two] == ["more pelicans please", "cheesecake again"]
    assert len(json.loads(cli.ok("logs", "-n", "0", "--json").stdout)) == 4


def test_costs_are_summed_exactly(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "llmkernel.toml").write_text(
        "[prices.'mock/echo']\ninput = 1.5\noutput = 3\n"
        "[prices.'mock/chat']\ninput = 2\noutput = 4\n"
    )
    cli.ok("chat", "one two three", "-m", "mock/echo")
    cli.ok("chat", "four", "-m", "mock/chat")
    rows = json.loads(cli.ok("logs", "--json").stdout)
    from decimal import Decimal

    costs = [Decimal(r["cost"]) for r in rows]
    assert all(c > 0 for c in costs)
    assert f"total ${sum(costs):f}" in cli.ok("logs").stdout


def test_logs_off_records_nothing_until_on_or_log(cli: Any) -> None:
    assert cli.ok("logs", "off").stdout == "logging is off\n"
    assert "logging is off" in cli.ok("logs", "status").stdout
    cli.ok("chat", "not recorded", "-m", "mock/echo")
    cli.ok("chat", "recorded anyway", "-m", "mock/echo", "--log")
    cli.ok("logs", "on")
    cli.ok("chat", "recorded", "-m", "mock/echo")
    cli.ok("chat", "skipped", "-m", "mock/echo", "-n")
    prompts = [r["prompt"] for r in json.loads(cli.ok("logs", "-n", "0", "--json").stdout)]
    assert prompts == ["recorded anyway", "recorded"]
    status = cli.ok("logs", "status").stdout
    assert "logging is on" in status and "responses: 2" in status


def test_the_library_stores_no_content(tmp_path: Path) -> None:
    from llmkernel import Kernel

    with Kernel.from_config({}) as kernel:
        assert kernel.chat("mock/echo", "a secret prompt").text == "a secret prompt"
    assert not (data_dir() / "logs.db").exists()
    for path in tmp_path.rglob("*.db"):  # the ledger keeps numbers, never text
        conn = sqlite3.connect(path)
        dump = "\n".join(conn.iterdump())
        conn.close()
        assert "a secret prompt" not in dump, path


# ----------------------------------------------------------------- conversations


def _answer(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1727000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


@pytest.fixture
def upstream(tmp_path: Path) -> Any:
    pytest.importorskip("llmkernel_openai")
    from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

    server = FakeServer()
    server.expect(
        "POST",
        "/v1/chat/completions",
        FakeResponse.json_body(_answer("Paris.")),
        FakeResponse.json_body(_answer("About two million.")),
        FakeResponse.json_body(_answer("Lyon.")),
    )
    (tmp_path / "llmkernel.toml").write_text(
        f"[providers.fake]\ntype = 'openai'\nbase_url = '{server.url}/v1'\n"
        "api_key_env = 'FAKE_KEY'\n"
    )
    yield server
    server.close()


def test_continue_sends_the_earlier_turns_and_keeps_the_model(cli: Any, upstream: Any) -> None:
    env = {"FAKE_KEY": "k"}
    cli.ok("chat", "Capital of France?", "-m", "fake/gpt-4o-mini", "-s", "Answer briefly", env=env)
    assert cli.ok("chat", "How many people live there?", "-C", env=env).stdout == (
        "About two million.\n"
    )
    sent = upstream.requests[1].json()
    assert sent["model"] == "gpt-4o-mini", "the conversation's model, without -m"
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly"},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "How many people live there?"},
    ]
    rows = json.loads(cli.ok("logs", "--json").stdout)
    assert len({r["conversation_id"] for r in rows}) == 1
    cid = rows[0]["conversation_id"]
    cli.ok("chat", "unrelated", "-m", "mock/echo")  # now the last conversation is another
    cli.ok("chat", "And the second city?", "--cid", cid, "--no-stream", env=env)
    assert [m["content"] for m in upstream.requests[2].json()["messages"]] == [
        "Answer briefly",
        "Capital of France?",
        "Paris.",
        "How many people live there?",
        "About two million.",
        "And the second city?",
    ]
    assert len(json.loads(cli.ok("logs", "--cid", cid, "--json").stdout)) == 3


def test_continue_with_nothing_logged_or_an_unknown_id(cli: Any) -> None:
    empty = cli("chat", "hi", "-C")
    assert empty.returncode == 2
    assert empty.stderr.strip() == "llmkernel: error: no conversation to continue: the log is empty"
    unknown = cli("chat", "hi", "--cid", "nope")
    assert unknown.returncode == 2 and "no conversation 'nope'" in unknown.stderr


def test_repl_holds_a_conversation_with_multi_line_and_exit(cli: Any, upstream: Any) -> None:
    script = "Capital of France?\n!multi\nHow many\npeople live there?\n!end\n\nexit\nnot sent\n"
    result = cli.ok("repl", "-m", "fake/gpt-4o-mini", stdin=script, env={"FAKE_KEY": "k"})
    assert result.stdout == "Paris.\nAbout two million.\n"
    assert len(upstream.requests) == 2
    assert upstream.requests[1].json()["messages"][-1] == {
        "role": "user",
        "content": "How many\npeople live there?",
    }
    rows = json.loads(cli.ok("logs", "--json").stdout)
    assert [r["prompt"] for r in rows] == ["Capital of France?", "How many\npeople live there?"]
    assert rows[0]["conversation_id"] == rows[1]["conversation_id"]


def test_repl_keeps_going_after_a_failed_turn(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "llmkernel.toml").write_text(
        "[providers.flaky]\ntype = 'mock'\nfailure_rate = 1.0\nerror_kinds = ['server']\n"
        "[retry]\nattempts = 1\n"
    )
    result = cli.ok("chat", "-i", "-m", "mock/echo", stdin="one\n!multi x\na\n!end x\ntwo\n")
    assert result.stdout == "one\na\ntwo\n"
    failed = cli.ok("chat", "--interactive", "-m", "flaky/chat", stdin="one\n")
    assert "llmkernel: error: flaky/chat: simulated server" in failed.stderr
