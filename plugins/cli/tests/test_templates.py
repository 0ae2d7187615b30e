"""Templates through the real entry point: saved as YAML, listed, shown, deleted,
applied with $input and -p parameters, on chat and on batch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("llmkernel_mock")


def templates() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "llmkernel" / "templates"


def test_save_list_show_delete(cli: Any) -> None:
    saved = cli.ok(
        "templates", "save", "french", "-s", "Speak in French to $who", "-m", "mock/echo",
        "-o", "temperature=0.5", "-o", "stop=[\"!\"]", "-p", "who", "a friend",
    )  # fmt: skip
    assert "saved template 'french'" in saved.stderr
    data = yaml.safe_load((templates() / "french.yaml").read_text())
    assert data == {
        "system": "Speak in French to $who",
        "model": "mock/echo",
        "options": {"temperature": 0.5, "stop": ["!"]},
        "defaults": {"who": "a friend"},
    }
    assert cli.ok("templates", "path").stdout.strip() == str(templates())
    assert cli.ok("templates").stdout.startswith("french")
    assert yaml.safe_load(cli.ok("templates", "show", "french").stdout) == data
    cli.ok("templates", "delete", "french")
    assert cli.ok("templates", "list").stdout == ""
    missing = cli("templates", "show", "french")
    assert (
        missing.returncode == 2 and "no template 'french' (templates: none saved)" in missing.stderr
    )


def test_input_and_parameters_fill_the_template(cli: Any) -> None:
    cli.ok("templates", "save", "recipe", "--prompt", "Cook $dish with $input, $$5 at most")
    result = cli.ok("chat", "-t", "recipe", "eggs", "-p", "dish", "an omelette", "-m", "mock/echo")
    assert result.stdout == "Cook an omelette with eggs, $5 at most\n"
    piped = cli.ok("chat", "-t", "recipe", "-p", "dish", "soup", "-m", "mock/echo", stdin="leeks")
    assert piped.stdout == "Cook soup with leeks, $5 at most\n"
    missing = cli("chat", "-t", "recipe", "eggs", "-m", "mock/echo")
    assert missing.returncode == 2
    assert "template 'recipe' needs the parameter 'dish': -p dish VALUE" in missing.stderr


def test_a_template_sets_system_model_and_options_and_flags_win(cli: Any) -> None:
    (templates()).mkdir(parents=True)
    (templates() / "brief.yaml").write_text(
        "system: Be brief about $topic\nmodel: mock/chat\noptions:\n  max_tokens: 3\n"
        "defaults:\n  topic: birds\n"
    )
    out = json.loads(cli.ok("chat", "-t", "brief", "Tell me", "--json").stdout)
    assert out["model"] == "chat" and out["usage"]["output_tokens"] <= 3
    logged = json.loads(cli.ok("logs", "-n", "1", "--json").stdout)[0]
    assert logged["system"] == "Be brief about birds" and logged["options"] == {"max_tokens": 3}
    cli.ok("chat", "-t", "brief", "Tell me", "-m", "mock/echo", "-p", "topic", "cats")
    logged = json.loads(cli.ok("logs", "-n", "1", "--json").stdout)[0]
    assert logged["model"] == "mock/echo" and logged["system"] == "Be brief about cats"


def test_chat_save_and_bad_templates(cli: Any, tmp_path: Path) -> None:
    cli.ok("chat", "--save", "summarize", "-s", "Summarize", "Summarize: $input")
    assert cli.ok("chat", "-t", "summarize", "long text", "-m", "mock/echo").stdout == (
        "Summarize: long text\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("sytem: typo\n")
    result = cli("chat", "-t", str(bad), "hi")
    assert result.returncode == 2 and "unknown key 'sytem'" in result.stderr
    traversal = cli("templates", "save", "../x", "-s", "no")
    assert traversal.returncode == 2 and "letters, digits" in traversal.stderr


def test_batch_takes_a_template(cli: Any, tmp_path: Path) -> None:
    pytest.importorskip("llmkernel_batch")
    cli.ok("templates", "save", "shout", "--prompt", "LOUD: $input", "-m", "mock/echo",
           "-s", "sys")  # fmt: skip
    (tmp_path / "prompts.txt").write_text("one\ntwo\n")
    cli.ok("batch", "prompts.txt", "-t", "shout")
    lines = (tmp_path / "prompts.results.jsonl").read_text().splitlines()
    texts = sorted(json.loads(line)["response"]["text"] for line in lines)
    assert texts == ["LOUD: one", "LOUD: two"]
