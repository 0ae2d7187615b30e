"""Azure specifics: the content filter (a blocked prompt, a filtered completion,
streamed too), bearer tokens from a command and from Entra ID, headers and request
ids, deployment mapping, and a cheap plugin import."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from azure_wire import (
    HEADERS,
    REQUEST_ID,
    SAFE,
    chunk,
    completion,
    content_filter_error,
    error,
    prompt_filter_chunk,
    sse,
)

import llmkernel_azure.plugin
from llmkernel import errors
from llmkernel.kernel import Kernel
from llmkernel_azure.errors import AzureContentFilteredError
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

HI = [{"role": "user", "content": "hi"}]
CHAT = "/openai/v1/chat/completions"
KEY = "azure-key-SECRET-0123456789"


def make(server: FakeServer, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Kernel:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    table = {"type": "azure", "endpoint": server.url, **options}
    return Kernel.from_config(
        {"providers": {"az": table}, "retry": {"attempts": 1}},
        plugins=[llmkernel_azure.plugin],
        entry_points=False,
    )


async def test_a_blocked_prompt_names_the_categories(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.expect("POST", CHAT, error(400, content_filter_error()))
    async with make(server, monkeypatch) as kernel:
        with pytest.raises(errors.ContentFilteredError) as info:
            await kernel.achat(model="az/gpt-4o", messages=HI)
    found = info.value
    assert isinstance(found, AzureContentFilteredError)
    assert found.categories == ["hate", "jailbreak"]
    assert "filtered: hate (high), jailbreak" in str(found)
    assert found.results["violence"] == {"filtered": False, "severity": "low"}
    assert found.request_id == REQUEST_ID
    assert found.headers["x-ms-region"] == "Sweden Central"
    assert found.fallback is False


async def test_a_filtered_completion(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    filters = {**SAFE, "violence": {"filtered": True, "severity": "medium"}}
    body = completion({"content": None}, finish="content_filter", filters=filters)
    server.expect("POST", CHAT, FakeResponse.json_body(body, headers=HEADERS))
    async with make(server, monkeypatch) as kernel:
        response = await kernel.achat(model="az/gpt-4o", messages=HI)
    assert response.finish_reason == "content_filter"
    assert response.refusal == "filtered by Azure's content filter: violence (medium)"
    assert response.headers["apim-request-id"] == REQUEST_ID


async def test_a_filtered_stream(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    filters = {**SAFE, "sexual": {"filtered": True, "severity": "high"}}
    objects: list[Any] = [
        prompt_filter_chunk(),
        chunk({"role": "assistant", "content": "Once upon"}),
        chunk({}, finish="content_filter", filters=filters),
    ]
    server.expect("POST", CHAT, sse(objects))
    async with make(server, monkeypatch) as kernel:
        handle = kernel.astream(model="az/gpt-4o", messages=HI)
        events = [e async for e in handle]
    assert events[-1].type == "finish" and events[-1].finish_reason == "content_filter"
    assert handle.response is not None
    assert handle.response.text == "Once upon"
    assert handle.response.refusal == "filtered by Azure's content filter: sexual (high)"
    assert handle.response.headers["apim-request-id"] == REQUEST_ID


async def test_token_command_gives_a_cached_bearer_token(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    script = f"open({str(runs)!r}, 'a').write('x'); print('eyJ0eXAiOiJKV1QiLCJhbGciOi-token')"
    body = completion({"content": "ok"})
    server.expect("POST", CHAT, FakeResponse.json_body(body, headers=HEADERS))
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    table = {
        "type": "azure",
        "endpoint": server.url,
        "token_command": [sys.executable, "-c", script],
    }
    kernel = Kernel.from_config(
        {"providers": {"az": table}}, plugins=[llmkernel_azure.plugin], entry_points=False
    )
    async with kernel:
        await kernel.achat(model="az/gpt-4o", messages=HI)
        await kernel.achat(model="az/gpt-4o", messages=HI)
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi-token"
    ] * 2
    assert "api-key" not in server.requests[0].headers
    assert runs.read_text() == "x", "the token is reused, not fetched per request"


async def test_a_failing_token_command_is_an_authentication_error(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = [sys.executable, "-c", "import sys; sys.exit('ERROR: Please run az login')"]
    async with make(server, monkeypatch, token_command=command) as kernel:
        with pytest.raises(errors.AuthenticationError, match="Please run az login"):
            await kernel.achat(model="az/gpt-4o", messages=HI)
    assert server.requests == []


async def test_entra_needs_azure_identity(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if not installed
    async with make(server, monkeypatch, entra=True) as kernel:
        with pytest.raises(errors.AuthenticationError, match=r"llmkernel-azure\[entra\]"):
            await kernel.achat(model="az/gpt-4o", messages=HI)


async def test_entra_asks_for_the_scope_and_sends_the_token(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A stand-in ``azure.identity`` package (azure-identity is an optional extra)
    with the shape of its ``DefaultAzureCredential().get_token(scope)``."""
    package = tmp_path / "fake_identity" / "azure" / "identity"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "import time\n"
        "from collections import namedtuple\n"
        "AccessToken = namedtuple('AccessToken', ['token', 'expires_on'])\n"
        "SCOPES = []\n"
        "class DefaultAzureCredential:\n"
        "    def get_token(self, *scopes):\n"
        "        SCOPES.extend(scopes)\n"
        "        return AccessToken('entra-token-123', int(time.time()) + 3600)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "fake_identity"))
    for name in ("azure", "azure.identity"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    server.expect(
        "POST", CHAT, FakeResponse.json_body(completion({"content": "ok"}), headers=HEADERS)
    )
    async with make(server, monkeypatch, entra=True) as kernel:
        await kernel.achat(model="az/gpt-4o", messages=HI)
    assert server.requests[-1].headers["authorization"] == "Bearer entra-token-123"
    import azure.identity  # the stand-in

    assert azure.identity.SCOPES == ["https://cognitiveservices.azure.com/.default"]  # type: ignore[attr-defined]


async def test_unmapped_models_are_deployment_names(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = "/openai/deployments/my-gpt-4o/chat/completions"
    server.expect(
        "POST", path, FakeResponse.json_body(completion({"content": "ok"}), headers=HEADERS)
    )
    async with make(
        server, monkeypatch, api="deployments", api_version="2025-04-01-preview"
    ) as kernel:
        response = await kernel.achat(model="az/my-gpt-4o", messages=HI)
    assert response.text == "ok"
    sent = server.requests[-1]
    assert sent.query == {"api-version": ["2025-04-01-preview"]}
    assert sent.headers["api-key"] == KEY


async def test_deployment_not_found_says_how_to_map(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {
        "error": {
            "code": "DeploymentNotFound",
            "message": "The API deployment for this resource does not exist.",
        }
    }
    server.expect("POST", CHAT, error(404, body))
    async with make(server, monkeypatch) as kernel:
        with pytest.raises(errors.ModelNotFoundError, match="deployments = ") as info:
            await kernel.achat(model="az/gpt-4o", messages=HI)
    assert info.value.request_id == REQUEST_ID


def test_capabilities_follow_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    table = {
        "type": "azure",
        "endpoint": "https://contoso.openai.azure.com",
        "deployments": {"fast": "gpt-4o-mini"},
    }
    kernel = Kernel.from_config(
        {"providers": {"az": table}}, plugins=[llmkernel_azure.plugin], entry_points=False
    )
    provider = kernel.provider("az")
    found = provider.capabilities("fast")
    assert found is not None and found.context_window == 128_000
    assert provider.declared_models() == ["fast"]
    assert KEY not in repr(provider)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"type": "azure"}, "endpoint must be the resource URL"),
        (
            {"type": "azure", "endpoint": "https://x.openai.azure.com", "base_url": "https://y"},
            "not base_url",
        ),
        ({"type": "azure", "endpoint": "https://x.openai.azure.com", "api": "v2"}, "api"),
    ],
)
def test_bad_config_is_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        kernel = Kernel.from_config(
            {"providers": {"az": table}}, plugins=[llmkernel_azure.plugin], entry_points=False
        )
        kernel.provider("az")


def test_importing_the_plugin_is_cheap() -> None:
    code = (
        "import sys, llmkernel_azure.plugin;"
        "names = ('llmkernel_openai', 'llmkernel_azure', 'azure');"
        "print(sorted(m for m in sys.modules if m.startswith(names)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "['llmkernel_azure', 'llmkernel_azure.plugin']"


def test_the_cli_lists_the_plugin() -> None:
    cli = Path(sys.executable).parent / "llmkernel"
    result = subprocess.run(
        [str(cli), "plugins"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "azure" in result.stdout


async def test_a_bearer_token_echoed_in_an_error_is_redacted(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOi-echoed-token"
    body = {"error": {"code": "401", "message": f"token {token} is not valid for this resource"}}
    server.expect("POST", CHAT, error(401, body, **{"x-echo": f"Bearer {token}"}))
    command = [sys.executable, "-c", f"print({token!r})"]
    async with make(server, monkeypatch, token_command=command) as kernel:
        with pytest.raises(errors.AuthenticationError) as info:
            await kernel.achat(model="az/gpt-4o", messages=HI)
        health = await kernel.provider("az").health()
    assert server.requests[0].headers["authorization"] == f"Bearer {token}"
    assert token not in str(info.value) and "token [redacted] is not valid" in str(info.value)
    assert info.value.headers["x-echo"] == "[redacted]"
    assert not health.ok and token not in health.detail


async def test_concurrent_first_requests_run_the_token_command_once(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    script = f"open({str(runs)!r}, 'a').write('x'); print('concurrent-token-0123')"
    body = completion({"content": "ok"})
    server.expect("POST", CHAT, FakeResponse.json_body(body, headers=HEADERS))
    async with make(server, monkeypatch, token_command=[sys.executable, "-c", script]) as kernel:
        answers = await asyncio.gather(
            *(kernel.achat(model="az/gpt-4o", messages=HI) for _ in range(5))
        )
    assert [a.text for a in answers] == ["ok"] * 5
    assert runs.read_text() == "x"


@pytest.mark.parametrize("key", ["preset", "organization", "api_key_header"])
def test_openai_only_keys_are_refused(key: str) -> None:
    table = {"type": "azure", "endpoint": "https://x.openai.azure.com", key: "openai"}
    with pytest.raises(errors.ConfigError, match=f"does not take {key}"):
        Kernel.from_config(
            {"providers": {"az": table}}, plugins=[llmkernel_azure.plugin], entry_points=False
        ).provider("az")
