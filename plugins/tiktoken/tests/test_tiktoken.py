"""Token counts exact against small self-built encodings; estimates labelled;
offline fallback; context windows as data; the CLI command."""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
import tiktoken

from llmkernel import Kernel, hookimpl
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.testing.scripted import ScriptedProvider
from llmkernel.types import ChatRequest, ImagePart, Message, TextPart
from llmkernel_tiktoken import plugin
from llmkernel_tiktoken.counter import O200K_TOOLS, count_chat, image_tokens
from llmkernel_tiktoken.counting import TokenCounter
from llmkernel_tiktoken.encodings import BLOBS, Encodings, encoding_name
from llmkernel_tiktoken.limits import model_limits
from llmkernel_tiktoken.settings import TiktokenSettings

PATTERN = (
    r"""[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def small_encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    """Every byte is a token, plus merges that make "hello" one token and " world"
    two (" w" and "orld")."""
    ranks = {bytes([i]): i for i in range(256)}
    for piece in (b"he", b"ll", b"hell", b"hello", b" w", b"or", b"orl", b"orld"):
        ranks[piece] = len(ranks)
    return tiktoken.Encoding(name=name, pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={})


def test_the_small_encoding_merges() -> None:
    enc = small_encoding()
    assert len(enc.encode("hello")) == 1
    assert len(enc.encode(" world")) == 2
    assert len(enc.encode("hi")) == 2


class OpenAIType:
    """Serves provider type ``openai`` with scripted answers (the real provider
    plugin is another package)."""

    __llmkernel_name__ = "fake-openai"

    @hookimpl
    def provide_chat(self, config: ProviderConfig) -> Provider | None:
        if config.type not in ("openai", "anthropic", "gemini", "mock"):
            return None
        return ScriptedProvider(ProviderConfig(name=config.name, type=config.type, options={}))


def kernel_with(counter: TokenCounter | None = None, **config: Any) -> Kernel:
    kernel = Kernel.from_config(config, plugins=[OpenAIType(), plugin], entry_points=False)
    if counter is not None:
        plugin._counters[kernel] = counter
    return kernel


def counter_with(*encodings: tiktoken.Encoding, directory: str | None = None) -> TokenCounter:
    registry = Encodings(directory, env={})
    for enc in encodings:
        registry.register(enc)
    return TokenCounter(TiktokenSettings(), registry)


def test_chat_count_is_exact_with_openai_overhead() -> None:
    kernel = kernel_with(counter_with(small_encoding()))
    messages = [{"role": "system", "content": "hi"}, {"role": "user", "content": "hello"}]
    count = kernel.count_tokens("openai/gpt-4o", messages)
    # reply priming 3; system: 3 + "system" 6 + "hi" 2; user: 3 + "user" 4 + "hello" 1
    assert count.tokens == 3 + (3 + 6 + 2) + (3 + 4 + 1)
    assert count.exact and "o200k_base" in count.method


def test_a_role_outside_the_known_set_is_counted_as_its_text() -> None:
    enc = small_encoding()
    request = ChatRequest(
        model="gpt-4o",
        messages=(Message(role="function", content=(TextPart(text="hello"),)),),  # type: ignore[arg-type]
    )
    count = count_chat(request, enc, tools=O200K_TOOLS)
    assert count.tokens == 3 + 3 + len(enc.encode_ordinary("function")) + 1


def test_a_name_costs_one_token_plus_itself() -> None:
    kernel = kernel_with(counter_with(small_encoding()))
    plain = kernel.count_tokens("openai/gpt-4o", [{"role": "user", "content": "hello"}])
    named = kernel.count_tokens(
        "openai/gpt-4o", [{"role": "user", "content": "hello", "name": "he"}]
    )
    assert named.tokens - plain.tokens == 1 + 1


def test_tools_follow_the_cookbook_constants() -> None:
    kernel = kernel_with(counter_with(small_encoding()))
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "description": "hello.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "x", "description": "d", "enum": ["hello", "or"]}},
            },
        },
    }
    bare = kernel.count_tokens("openai/gpt-4o", "hello")
    with_tool = kernel.count_tokens("openai/gpt-4o", "hello", tools=[tool])
    k = O200K_TOOLS
    # "f:hello" -> f, :, hello = 3; property line "a:x:d" = 5 bytes; enum items 1 and 1
    expected = k.func_init + 3 + k.prop_init + k.prop_key + k.enum_init
    expected += (k.enum_item + 1) + (k.enum_item + 1) + 5 + k.func_end
    assert with_tool.tokens - bare.tokens == expected
    assert with_tool.exact


def test_cl100k_models_use_their_encoding_and_tool_constants() -> None:
    counter = counter_with(small_encoding("cl100k_base"))
    kernel = kernel_with(counter)
    count = kernel.count_tokens("openai/gpt-4-turbo", "hello")
    assert count.exact and "cl100k_base" in count.method
    assert encoding_name("gpt-4o-mini-2024-07-18") == "o200k_base"
    assert encoding_name("ft:gpt-4o-mini:org::id") == "o200k_base"
    assert encoding_name("gpt-5.1") == "o200k_base" and encoding_name("o3-pro") == "o200k_base"
    assert encoding_name("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_name("llama-3.3-70b-versatile") is None


def test_images_are_counted_by_the_tile_rule_and_marked_approximate() -> None:
    enc = small_encoding()
    png = base64.b64encode(
        b"\x89PNG\r\n\x1a\n"
        + b"\x00\x00\x00\rIHDR"
        + (2048).to_bytes(4, "big")
        + (4096).to_bytes(4, "big")
        + b"\x00" * 8
    ).decode()
    image = ImagePart(data=png, media_type="image/png", detail="high")
    # 2048x4096 -> fit 1024x2048 -> short side 768: 768x1536 -> 2x3 tiles
    assert image_tokens(image) == 85 + 170 * 6
    assert image_tokens(ImagePart(url="https://x/y.png", detail="low")) == 85
    request = ChatRequest(
        model="gpt-4o", messages=(Message(role="user", content=(TextPart(text="hi"), image)),)
    )
    count = count_chat(request, enc, tools=O200K_TOOLS)
    assert count.tokens == 3 + 3 + 4 + 2 + 85 + 170 * 6
    assert not count.exact


def test_offline_without_files_falls_back_warns_once_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = kernel_with(counter_with(directory=str(tmp_path)))
    with caplog.at_level(logging.INFO, logger="llmkernel"):
        first = kernel.count_tokens("openai/gpt-4o", "hello world")
        second = kernel.count_tokens("openai/gpt-4o", "hello again")
    assert not first.exact and not second.exact
    assert "o200k_base encoding files not found" in first.method
    warnings = [r for r in caplog.records if "encoding_missing" in r.getMessage()]
    assert len(warnings) == 1


def test_files_on_disk_are_found_by_name_or_tiktoken_cache_name(tmp_path: Path) -> None:
    (tmp_path / "o200k_base.tiktoken").write_bytes(b"aGk= 0\n")
    assert (
        Encodings(str(tmp_path), env={}).find_file("o200k_base") == tmp_path / "o200k_base.tiktoken"
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / hashlib.sha1(BLOBS["cl100k_base"][0].encode()).hexdigest()
    cached.write_bytes(b"aGk= 0\n")
    found = Encodings(None, env={"TIKTOKEN_CACHE_DIR": str(cache)}).find_file("cl100k_base")
    assert found == cached


def test_a_corrupt_file_is_refused_and_counts_fall_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "o200k_base.tiktoken").write_bytes(b"aGk= 0\n")  # not the real file
    with caplog.at_level(logging.INFO, logger="llmkernel"):
        assert Encodings(str(tmp_path), env={}).get("o200k_base") is None
    assert any("SHA-256 mismatch" in r.getMessage() for r in caplog.records)


def test_other_providers_get_labelled_estimates() -> None:
    kernel = kernel_with(
        counter_with(small_encoding()),
        providers={"claude": {"type": "anthropic"}, "g": {"type": "gemini"}},
    )
    anthropic = kernel.count_tokens("claude/claude-sonnet-4-5", "hello")
    gemini = kernel.count_tokens("g/gemini-2.5-pro", "hello")
    assert not anthropic.exact and "Anthropic" in anthropic.method
    assert anthropic.tokens == 1 + 3 + 3  # o200k tokens of "hello" + overhead
    assert not gemini.exact and "4 characters" in gemini.method
    assert gemini.tokens == 2 + 3 + 3


def test_unknown_provider_types_are_left_to_the_kernel() -> None:
    kernel = kernel_with(counter_with(small_encoding()))
    assert kernel.count_tokens("mock/echo", "hello").method.startswith("estimate: about 4")


def test_settings_are_read_strictly() -> None:
    from llmkernel.errors import ConfigError

    with pytest.raises(ConfigError, match="encodings_dirr"):
        kernel_with(plugin={"tiktoken": {"encodings_dirr": "/x"}})


def test_limits_as_data_with_sources() -> None:
    limits = model_limits("openai", "gpt-4o-2024-08-06")
    assert limits is not None and limits.context_window == 128_000
    assert limits.max_output_tokens == 16_384 and limits.source.startswith("https://")
    gpt5 = model_limits("openai", "gpt-5")
    assert gpt5 is not None and gpt5.input_limit == 272_000
    assert model_limits("openai", "gpt-4o-mini") is not model_limits("openai", "gpt-4o")
    assert model_limits("openai", "nonexistent-model") is None
    assert model_limits("mock", "echo") is None


def test_tokens_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import argparse
    import json

    kernel = kernel_with(counter_with(small_encoding()))
    code = plugin._run(argparse.Namespace(text="hello", model="openai/gpt-4o", json=True), kernel)
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "model": "openai/gpt-4o",
        "tokens": 3 + 3 + 4 + 1,
        "exact": True,
        "method": "tiktoken o200k_base with OpenAI's chat overhead",
    }


def test_embedding_inputs_are_counted_exactly() -> None:
    from llmkernel.types import EmbeddingRequest

    counter = counter_with(small_encoding("cl100k_base"))
    request = EmbeddingRequest(model="text-embedding-3-small", inputs=("hello", "hi"))
    count = counter.count(request, "openai", "text-embedding-3-small")
    assert count is not None and count.tokens == 1 + 2 and count.exact
    assert counter.count(request, "mock", "embed") is None


def test_special_token_text_is_counted_as_text_never_refused() -> None:
    """A prompt, a tool call or a tool may contain "<|endoftext|>": it is text the
    user sent, counted as such (tiktoken's ``encode`` would raise on it)."""
    base = small_encoding()
    enc = tiktoken.Encoding(
        name="o200k_base",
        pat_str=PATTERN,
        mergeable_ranks=base._mergeable_ranks,
        special_tokens={"<|endoftext|>": base.n_vocab},
    )
    with pytest.raises(ValueError):
        enc.encode("<|endoftext|>")
    kernel = kernel_with(counter_with(enc))
    messages = [
        {"role": "user", "content": "say <|endoftext|>"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "echo", "arguments": '{"t": "<|endoftext|>"}'},
                }
            ],
        },
    ]
    count = kernel.count_tokens("openai/gpt-4o", messages)
    arguments = kernel.build_request("openai/gpt-4o", messages).messages[1].tool_calls[0]
    assert "<|endoftext|>" in arguments.arguments_json
    ordinary = enc.encode_ordinary
    expected = (
        3
        + (3 + len(ordinary("user")) + len(ordinary("say <|endoftext|>")))
        + (3 + len(ordinary("assistant")) + len(ordinary("echo")))
        + len(ordinary(arguments.arguments_json))
    )
    assert count.tokens == expected


def test_tokens_says_nothing_about_the_offline_mock(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    pytest.importorskip("llmkernel_mock")
    result = subprocess.run(
        [sys.executable, "-m", "llmkernel_cli", "tokens", "hello there"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("LLMKERNEL_")},
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("tokens (estimate: about 4 characters per token)\n")
    assert result.stderr == "", "no default model warning: counting calls nothing"
