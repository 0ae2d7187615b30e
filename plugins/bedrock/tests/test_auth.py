"""SigV4 signing and the credential chain: the test verifier against AWS's published
example, then the provider's signatures verified for static, temporary and profile
credentials; missing credentials and region are clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bedrock_wire import (
    ACCESS_KEY,
    MODEL,
    SECRET_KEY,
    check_sigv4,
    converse,
    json_response,
    path,
    sigv4_signature,
)

import llmkernel_bedrock.plugin
from llmkernel import errors
from llmkernel.kernel import Kernel
from llmkernel_http.testing.fake_server import FakeServer

HI = [{"role": "user", "content": "hi"}]


def test_the_verifier_reproduces_aws_published_example() -> None:
    """AWS General Reference, "Signed Signature Version 4 Requests Examples": a POST
    to IAM with AKIDEXAMPLE, signed 2011-09-09T23:36:00Z."""
    signature = sigv4_signature(
        method="POST",
        raw_path="/",
        query="",
        headers={
            "content-type": "application/x-www-form-urlencoded; charset=utf-8",
            "host": "iam.amazonaws.com",
            "x-amz-date": "20110909T233600Z",
        },
        signed=["content-type", "host", "x-amz-date"],
        body=b"Action=ListUsers&Version=2010-05-08",
        amz_date="20110909T233600Z",
        secret="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        service="iam",
    )
    assert signature == "ced6826de92d2bdeed8f846f0bf508e8559e98e4b0199114b84c54174deb456c"


def kernel_for(server: FakeServer, **options: Any) -> Kernel:
    table = {"type": "bedrock", "base_url": server.url, "control_url": server.url, **options}
    return Kernel.from_config(
        {"providers": {"aws": table}, "retry": {"attempts": 1}},
        plugins=[llmkernel_bedrock.plugin],
        entry_points=False,
    )


async def test_temporary_credentials_send_and_sign_the_session_token(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "IQoJb3JpZ2luX2VjEXAMPLE//SESSION-TOKEN"
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    server.expect("POST", path(MODEL, "converse"), json_response(converse([{"text": "ok"}])))
    async with kernel_for(server, region="us-east-1") as kernel:
        await kernel.achat(model=f"aws/{MODEL}", messages=HI)
    sent = server.requests[-1]
    assert sent.headers["x-amz-security-token"] == token
    parts = check_sigv4(sent)
    assert "x-amz-security-token" in parts["signed"].split(";")


async def test_a_profile_from_the_shared_files_gives_keys_and_region(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "profileSECRETkey0123456789abcdefEXAMPLE"
    (tmp_path / "credentials").write_text(
        f"[dev]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {secret}\n"
    )
    (tmp_path / "config").write_text("[profile dev]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.delenv(name)
    server.expect("POST", path(MODEL, "converse"), json_response(converse([{"text": "ok"}])))
    async with kernel_for(server, profile="dev") as kernel:
        await kernel.achat(model=f"aws/{MODEL}", messages=HI)
    check_sigv4(server.requests[-1], secret=secret, region="eu-west-3")


async def test_no_credentials_anywhere_is_an_authentication_error(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with kernel_for(server, region="us-east-1") as kernel:
        with pytest.raises(errors.AuthenticationError, match="no AWS credentials found"):
            await kernel.achat(model=f"aws/{MODEL}", messages=HI)
    assert server.requests == []


async def test_no_region_anywhere_is_a_config_error(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    kernel = Kernel.from_config(
        {"providers": {"aws": {"type": "bedrock"}}},
        plugins=[llmkernel_bedrock.plugin],
        entry_points=False,
    )
    async with kernel:
        with pytest.raises(errors.ConfigError, match=r"no AWS region for \[providers.aws\]"):
            await kernel.achat(model=f"aws/{MODEL}", messages=HI)


async def test_the_default_endpoint_follows_the_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-northeast-1")
    kernel = Kernel.from_config({}, plugins=[llmkernel_bedrock.plugin], entry_points=False)
    provider: Any = kernel.provider("bedrock")
    await provider._prepare(MODEL)
    assert provider.base_url() == "https://bedrock-runtime.ap-northeast-1.amazonaws.com"
    assert provider.control_url == "https://bedrock.ap-northeast-1.amazonaws.com"
    await kernel.aclose()


@pytest.mark.parametrize(
    "model",
    [
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
    ],
)
async def test_inference_profiles_and_arns_are_encoded_and_signed(
    server: FakeServer, model: str
) -> None:
    server.expect("POST", path(model, "converse"), json_response(converse([{"text": "ok"}])))
    async with kernel_for(server, region="us-east-1") as kernel:
        response = await kernel.achat(model=f"aws/{model}", messages=HI)
    assert response.text == "ok"
    sent = server.requests[-1]
    assert "%3A" in sent.path and "/" not in sent.path.removeprefix("/model/").split("/")[0]
    check_sigv4(sent)


def test_importing_the_plugin_imports_neither_botocore_nor_the_provider() -> None:
    code = (
        "import sys, llmkernel_bedrock.plugin;"
        "print(sorted(m for m in sys.modules if m.startswith(('botocore', 'llmkernel_bedrock'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "['llmkernel_bedrock', 'llmkernel_bedrock.plugin']"


def test_secrets_stay_out_of_reprs(server: FakeServer) -> None:
    kernel = kernel_for(server, region="us-east-1")
    provider = kernel.provider("aws")
    assert SECRET_KEY not in repr(provider)


async def test_the_signature_at_a_fixed_time_is_the_expected_one(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With botocore's clock fixed, the exact Authorization header the provider
    sends equals the one the independent SigV4 implementation computes."""
    import datetime

    import botocore.auth  # type: ignore[import-untyped]

    fixed = datetime.datetime(2026, 11, 30, 12, 34, 56)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: fixed)
    server.expect("POST", path(MODEL, "converse"), json_response(converse([{"text": "ok"}])))
    async with kernel_for(server, region="us-east-1") as kernel:
        await kernel.achat(model=f"aws/{MODEL}", messages=HI)
    sent = server.requests[-1]
    assert sent.headers["x-amz-date"] == "20261130T123456Z"
    signed = ["accept", "content-type", "host", "x-amz-date"]
    expected = sigv4_signature(
        method="POST",
        raw_path=sent.path,
        query="",
        headers=dict(sent.headers),
        signed=signed,
        body=sent.body,
        amz_date="20261130T123456Z",
        secret=SECRET_KEY,
        region="us-east-1",
        service="bedrock",
    )
    assert sent.headers["authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20261130/us-east-1/bedrock/aws4_request, "
        f"SignedHeaders={';'.join(signed)}, Signature={expected}"
    )
