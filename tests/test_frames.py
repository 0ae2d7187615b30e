"""Issue 27: one sync ``kernel.chat`` reaches the HTTP provider's ``send_json`` in at
most 12 frames (asyncio's four included), through a real OpenAI provider and a fake
server on 127.0.0.1."""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import pytest

pytest.importorskip("llmkernel_openai")

from llmkernel import Kernel
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def test_a_sync_chat_reaches_send_json_in_twelve_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMES_TEST_KEY", "sk-test")
    with FakeServer() as server:
        server.expect("POST", "/v1/chat/completions", FakeResponse.json_body(COMPLETION))
        config = {
            "providers": {
                "oa": {
                    "type": "openai",
                    "base_url": server.url + "/v1",
                    "api_key_env": "FRAMES_TEST_KEY",
                }
            }
        }
        seen: list[list[str]] = []

        def profile(frame: FrameType, event: str, arg: Any) -> None:
            if seen or event != "call" or frame.f_code.co_name != "send_json":
                return
            names: list[str] = []
            current: FrameType | None = frame
            while current is not None:
                names.append(current.f_code.co_name)
                if current.f_code.co_name == "chat" and current.f_code.co_filename.endswith(
                    "llmkernel/kernel.py"
                ):
                    break
                current = current.f_back
            seen.append(list(reversed(names)))

        with Kernel.from_config(config, entry_points=False, plugins=[_openai()]) as kernel:
            sys.setprofile(profile)
            try:
                assert kernel.chat("oa/gpt-4o-mini", "hi").text == "ok"
            finally:
                sys.setprofile(None)
    (frames,) = seen
    assert frames[0] == "chat" and frames[-1] == "send_json"
    assert len(frames) <= 12, frames


def _openai() -> Any:
    import llmkernel_openai.plugin

    return llmkernel_openai.plugin
