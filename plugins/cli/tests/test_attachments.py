"""``chat -a``: images and PDFs typed by their content and sent in each provider's
own shape (checked at a fake upstream speaking OpenAI's, Anthropic's and Gemini's
wire formats), downloaded from a URL, refused by a model that cannot take them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llmkernel_mock")
fake = pytest.importorskip("llmkernel_http.testing.fake_server")

# the smallest real files of each kind: a 1x1 PNG, a JPEG header, a one-page PDF
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n%%EOF\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "cat.png").write_bytes(PNG)
    (tmp_path / "really-a-jpeg.png").write_bytes(JPEG)
    (tmp_path / "paper.pdf").write_bytes(PDF)
    (tmp_path / "notes.pdf").write_text("just text, named .pdf")
    return tmp_path


OPENAI = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "seen"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}  # fmt: skip
ANTHROPIC = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "seen"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 1},
}
GEMINI = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "seen"}]}, "finishReason": "STOP"}
    ],
    "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "totalTokenCount": 6},
    "modelVersion": "gemini-2.5-flash",
}
PROVIDERS = {
    "openai": ("/v1/chat/completions", OPENAI, "{url}/v1", "gpt-4o"),
    "anthropic": ("/v1/messages", ANTHROPIC, "{url}", "claude-sonnet-4-5"),
    "gemini": ("/v1beta/models/gemini-2.5-flash:generateContent", GEMINI, "{url}",
               "gemini-2.5-flash"),
}  # fmt: skip


@pytest.fixture
def upstream(request: pytest.FixtureRequest, files: Path) -> Iterator[tuple[Any, str]]:
    kind = request.param
    pytest.importorskip(f"llmkernel_{kind}")
    path, answer, base, model = PROVIDERS[kind]
    with fake.FakeServer() as server:
        server.expect("POST", path, fake.FakeResponse.json_body(answer))
        (files / "llmkernel.toml").write_text(
            f"[providers.up]\ntype = '{kind}'\nbase_url = '{base.format(url=server.url)}'\n"
            "api_key_env = 'UP_KEY'\n"
        )
        yield server, f"up/{model}"


def _sent(cli: Any, upstream: tuple[Any, str], *attachments: str) -> Any:
    server, model = upstream
    args = [a for spec in attachments for a in ("-a", spec)]
    result = cli.ok("chat", "describe", "-m", model, "--no-stream", *args, env={"UP_KEY": "k"})
    assert result.stdout == "seen\n"
    return server.requests[-1].json()


@pytest.mark.parametrize("upstream", ["openai"], indirect=True)
def test_openai_gets_image_url_and_file_parts(cli: Any, upstream: Any) -> None:
    body = _sent(cli, upstream, "cat.png", "really-a-jpeg.png", "paper.pdf")
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "describe"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64(JPEG)}"}},
                {
                    "type": "file",
                    "file": {
                        "file_data": f"data:application/pdf;base64,{b64(PDF)}",
                        "filename": "paper.pdf",
                    },
                },
            ],
        }
    ]


@pytest.mark.parametrize("upstream", ["anthropic"], indirect=True)
def test_anthropic_gets_image_and_document_blocks(cli: Any, upstream: Any) -> None:
    body = _sent(cli, upstream, "cat.png", "paper.pdf")
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "describe"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)},
                },
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
                },
            ],
        }
    ]


@pytest.mark.parametrize("upstream", ["gemini"], indirect=True)
def test_gemini_gets_inline_data(cli: Any, upstream: Any) -> None:
    body = _sent(cli, upstream, "cat.png", "paper.pdf")
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "describe"},
                {"inlineData": {"mimeType": "image/png", "data": b64(PNG)}},
                {"inlineData": {"mimeType": "application/pdf", "data": b64(PDF)}},
            ],
        }
    ]


@pytest.mark.parametrize("upstream", ["openai"], indirect=True)
def test_a_url_is_downloaded_and_typed_by_content(cli: Any, upstream: Any) -> None:
    with fake.FakeServer() as files_server:
        # served with a wrong content type and no extension: the bytes decide
        files_server.expect(
            "GET", "/picture", fake.FakeResponse(headers={"content-type": "text/plain"}, body=PNG)
        )
        files_server.expect("GET", "/gone", fake.FakeResponse(status=404, body=b"no"))
        body = _sent(cli, upstream, f"{files_server.url}/picture")
        part = body["messages"][0]["content"][1]
        assert part == {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"},
        }
        gone = cli("chat", "x", "-m", upstream[1], "-a", f"{files_server.url}/gone")
        assert gone.returncode == 2 and "HTTP 404" in gone.stderr


def test_content_not_an_image_or_pdf_is_refused_by_name(cli: Any, files: Path) -> None:
    result = cli("chat", "x", "-m", "mock/echo", "-a", "notes.pdf")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "llmkernel: error: attachment 'notes.pdf' is not an image (PNG, JPEG, GIF, WebP) or "
        "a PDF by its content; name its type with --at PATH TYPE if it is one"
    )
    wrong = cli("chat", "x", "-m", "mock/echo", "--at", "cat.png", "application/pdf")
    assert wrong.returncode == 2 and "is image/png by its content" in wrong.stderr
    missing = cli("chat", "x", "-m", "mock/echo", "-a", "nope.png")
    assert missing.returncode == 2 and "attachment 'nope.png': No such file" in missing.stderr


def test_a_model_that_cannot_take_them_is_refused_before_sending(cli: Any, files: Path) -> None:
    pytest.importorskip("llmkernel_openai")
    (files / "llmkernel.toml").write_text(
        "[providers.up]\ntype = 'openai'\nbase_url = 'http://127.0.0.1:9/v1'\n"
        "api_key_env = 'UP_KEY'\n"
    )
    result = cli("chat", "x", "-m", "up/o3-mini", "-a", "cat.png", "-a", "paper.pdf")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "llmkernel: error: model 'up/o3-mini' cannot take the attachments (PDF documents, "
        "images): up/o3-mini takes no documents or images"
    )


def test_attachments_are_logged_and_sent_again_on_continue(cli: Any, files: Path) -> None:
    cli.ok("chat", "what is this", "-m", "mock/echo", "-a", "cat.png")
    logged = json.loads(cli.ok("logs", "--json").stdout)[0]
    import hashlib

    assert logged["attachments"] == [hashlib.sha256(PNG).hexdigest()]
    pytest.importorskip("llmkernel_openai")
    with fake.FakeServer() as server:
        server.expect("POST", "/v1/chat/completions", fake.FakeResponse.json_body(OPENAI))
        (files / "llmkernel.toml").write_text(
            f"[providers.up]\ntype = 'openai'\nbase_url = '{server.url}/v1'\n"
            "api_key_env = 'UP_KEY'\n"
        )
        cli.ok("chat", "and now?", "-C", "-m", "up/gpt-4o", env={"UP_KEY": "k"})
        first = server.requests[0].json()["messages"][0]
    assert first["content"][1]["image_url"]["url"] == f"data:image/png;base64,{b64(PNG)}"
