"""API keys never appear in logs, errors, reprs or CLI output, for every provider."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import structlog

from llmkernel import Kernel, errors
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

KEY = "sk-SECRET-must-never-show-9f8e7d6c5b4a"
HTTP_TYPES = sorted(
    ep.name
    for ep in entry_points(group="llmkernel.plugins")
    if ep.name in {"openai", "anthropic", "gemini", "ollama"}
)
BASE = {"openai": "/v1"}


def config(ptype: str, server: FakeServer) -> dict[str, object]:
    return {
        "providers": {
            "p": {
                "type": ptype,
                "base_url": server.url + BASE.get(ptype, ""),
                "api_key_env": "LLMKERNEL_SECRET_TEST_KEY",
            }
        },
        "retry": {"attempts": 2, "initial_wait": 0, "max_wait": 0},
        # the circuit breaker would (rightly) stop the second call after a bad key
        "plugins": {"disabled": ["routing"]},
    }


def unauthorized(request: object) -> FakeResponse:
    # providers echo part of the offending key in their messages; the full key must not leak
    return FakeResponse.json_body(
        {
            "error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
                "status": "UNAUTHENTICATED",
            }
        },
        status=401,
    )


@pytest.mark.parametrize("ptype", HTTP_TYPES)
async def test_no_secret_in_logs_errors_or_reprs(
    ptype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMKERNEL_SECRET_TEST_KEY", KEY)
    sink = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.KeyValueRenderer()],
        logger_factory=lambda *a: structlog.PrintLogger(sink),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    root = logging.getLogger()
    handler = logging.StreamHandler(sink)
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)  # httpx and httpcore log requests at DEBUG
    try:
        with FakeServer() as server:
            server.default = unauthorized
            kernel = Kernel.from_config(config(ptype, server))
            async with kernel:
                with pytest.raises(errors.AuthenticationError) as info:
                    await kernel.achat(model="p/some-model", messages="hi")
                with pytest.raises(errors.ProviderError) as streamed:
                    async for _ in kernel.astream(model="p/some-model", messages="hi"):
                        pass
                health = await kernel.provider("p").health()
            sent = [r.headers for r in server.requests]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        structlog.reset_defaults()
    assert any(KEY in " ".join(h.values()) for h in sent), "the key was sent to the provider"
    texts = [
        sink.getvalue(),
        str(info.value),
        repr(info.value),
        str(streamed.value),
        repr(streamed.value),
        repr(kernel),
        repr(kernel.provider("p")),
        repr(kernel.provider("p").__dict__),
        str(health),
    ]
    for text in texts:
        assert KEY not in text
    assert "sk-SECRET" not in sink.getvalue()


@pytest.mark.parametrize("ptype", HTTP_TYPES)
def test_no_secret_in_cli_output(ptype: str, tmp_path: Path) -> None:
    with FakeServer() as server:
        server.default = unauthorized
        toml = tmp_path / "llmkernel.toml"
        base = server.url + BASE.get(ptype, "")
        toml.write_text(
            f'[providers.p]\ntype = "{ptype}"\nbase_url = "{base}"\n'
            'api_key_env = "LLMKERNEL_SECRET_TEST_KEY"\n'
            "[retry]\nattempts = 1\n"
        )
        env = {**os.environ, "LLMKERNEL_SECRET_TEST_KEY": KEY}
        result = subprocess.run(
            [sys.executable, "-m", "llmkernel_cli", "-vv", "chat", "hi", "-m", "p/some-model"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            check=False,
            timeout=60,
        )
    assert result.returncode == 1
    assert "p/some-model" in result.stderr
    assert KEY not in result.stdout + result.stderr
