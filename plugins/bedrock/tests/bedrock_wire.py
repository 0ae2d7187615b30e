"""Bedrock's wire format for the fake server, written from AWS's public references
(Bedrock Runtime API reference: Converse, ConverseStream, InvokeModel, errors; the
Bedrock API reference: ListFoundationModels; "Event stream encoding"; "Signature
Version 4 signing process"), independent of the provider's own code."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
import zlib
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from llmkernel_http.testing.fake_server import FakeResponse, Gate, Pause, Piece, RecordedRequest

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
REQUEST_ID = "7f1c2a3e-5b6d-4e8f-9a0b-1c2d3e4f5a6b"
EVENT_STREAM = "application/vnd.amazon.eventstream"
#: Bedrock pads stream payloads with a "p" field of random length.
PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
    "rkJggg=="
)

# --------------------------------------------------------------------------- event stream


def header(name: str, value: Any) -> bytes:
    """One header: a string (type 7), bool (0/1), int32 (4) or bytes (6)."""
    raw = name.encode()
    out = bytes([len(raw)]) + raw
    if isinstance(value, bool):
        return out + bytes([0 if value else 1])
    if isinstance(value, int):
        return out + bytes([4]) + struct.pack(">i", value)
    if isinstance(value, bytes):
        return out + bytes([6]) + struct.pack(">H", len(value)) + value
    data = str(value).encode()
    return out + bytes([7]) + struct.pack(">H", len(data)) + data


def frame(headers: dict[str, Any], payload: bytes) -> bytes:
    """A whole frame: prelude with its CRC, headers, payload, message CRC."""
    head = b"".join(header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    start = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return start + struct.pack(">I", zlib.crc32(start))


def event(kind: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps({**data, "p": PAD[: 5 + len(kind) % 20]}).encode()
    return frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        payload,
    )


def exception(kind: str, message: str, **extra: Any) -> bytes:
    """An exception frame; ``kind`` is the stream member, e.g. ``throttlingException``."""
    return frame(
        {
            ":exception-type": kind,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message, **extra}).encode(),
    )


def text_events(pieces: list[str], *, stop: str = "end_turn") -> list[bytes]:
    frames = [event("messageStart", {"role": "assistant"})]
    frames += [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces
    ]
    frames += [
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": stop}),
    ]
    return frames


def metadata(usage: dict[str, Any], latency: int = 412) -> bytes:
    return event("metadata", {"usage": usage, "metrics": {"latencyMs": latency}})


def bytewise(frames: list[bytes | Gate]) -> list[Piece]:
    """Every byte of every frame as its own chunk (gates kept in place)."""
    out: list[Piece] = []
    for item in frames:
        if isinstance(item, Gate):
            out.append(item)
        else:
            out.extend(item[i : i + 1] for i in range(len(item)))
    return out


def stream_response(
    frames: list[bytes | Gate], *, by_byte: bool = True, truncate: bool = False, reset: bool = False
) -> FakeResponse:
    pieces: list[Piece] = bytewise(frames) if by_byte else list(frames)
    if reset:
        # Let the client read what was sent: a reset discards unread data.
        pieces.append(Pause(0.3))
    return FakeResponse(
        status=200,
        headers={"content-type": EVENT_STREAM, "x-amzn-requestid": REQUEST_ID},
        pieces=pieces,
        truncate=truncate,
        reset=reset,
    )


# --------------------------------------------------------------------------- JSON answers


def usage(
    input_tokens: int, output_tokens: int, *, read: int = 0, write: int = 0
) -> dict[str, Any]:
    """Converse's TokenUsage: cache reads and writes beside inputTokens."""
    data: dict[str, Any] = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens + read + write,
    }
    if read or write:
        data["cacheReadInputTokens"] = read
        data["cacheWriteInputTokens"] = write
    return data


def converse(
    content: list[dict[str, Any]], *, stop: str = "end_turn", use: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": use or usage(12, 7),
        "metrics": {"latencyMs": 523},
    }


def json_response(data: Any, *, status: int = 200, **headers: str) -> FakeResponse:
    return FakeResponse.json_body(
        data, status=status, headers={"x-amzn-requestid": REQUEST_ID, **headers}
    )


def aws_error(status: int, kind: str, message: str, **headers: str) -> FakeResponse:
    """An AWS rest-json error: the type in x-amzn-errortype, the message in the body."""
    return FakeResponse.json_body(
        {"message": message},
        status=status,
        headers={
            "x-amzn-requestid": REQUEST_ID,
            "x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            **headers,
        },
    )


def foundation_models(ids: list[str]) -> dict[str, Any]:
    return {
        "modelSummaries": [
            {
                "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}",
                "modelId": model_id,
                "modelName": model_id.split(".")[-1],
                "providerName": model_id.split(".")[0].capitalize(),
                "inputModalities": ["TEXT"],
                "outputModalities": ["TEXT"],
                "responseStreamingSupported": True,
                "customizationsSupported": [],
                "inferenceTypesSupported": ["ON_DEMAND"],
                "modelLifecycle": {"status": "ACTIVE"},
            }
            for model_id in ids
        ]
    }


def path(model: str, action: str) -> str:
    return f"/model/{quote(model, safe='')}/{action}"


# --------------------------------------------------------------------------- SigV4


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4_signature(
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    signed: list[str],
    body: bytes,
    amz_date: str,
    secret: str,
    region: str,
    service: str,
) -> str:
    """The SigV4 signature, straight from AWS's description of the algorithm: the
    canonical request (the path URI-encoded once more, as every service but S3
    wants), the string to sign, the derived key, the HMAC."""
    canonical_query = "&".join(
        sorted(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, v in parse_qsl(query, keep_blank_values=True)
        )
    )
    canonical_headers = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed)
    canonical = "\n".join(
        [
            method,
            quote(raw_path or "/", safe="/~"),
            canonical_query,
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def check_sigv4(
    request: RecordedRequest, *, secret: str = SECRET_KEY, region: str = REGION
) -> dict[str, str]:
    """Assert ``request`` carries a valid SigV4 Authorization for the fixed
    credentials; returns the parsed parts."""
    auth = request.headers.get("authorization", "")
    found = _AUTH.fullmatch(auth)
    assert found, f"not a SigV4 Authorization header: {auth!r}"
    parts = found.groupdict()
    assert parts["key"] == ACCESS_KEY
    assert parts["region"] == region and parts["service"] == "bedrock"
    amz_date = request.headers["x-amz-date"]
    assert amz_date.startswith(parts["day"])
    signed = parts["signed"].split(";")
    assert {"host", "x-amz-date"} <= set(signed), signed
    split = urlsplit(request.target)
    expected = sigv4_signature(
        method=request.method,
        raw_path=split.path,
        query=split.query,
        headers=request.headers,  # type: ignore[arg-type]
        signed=signed,
        body=request.body,
        amz_date=amz_date,
        secret=secret,
        region=region,
        service="bedrock",
    )
    assert parts["signature"] == expected, "the SigV4 signature does not verify"
    assert secret not in str(request.headers) and secret not in request.target
    return parts
