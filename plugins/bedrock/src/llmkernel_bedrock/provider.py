"""The Bedrock provider: the Converse and ConverseStream APIs of Bedrock Runtime,
InvokeModel for Titan and Cohere embeddings, and the Bedrock control plane's
ListFoundationModels, signed with SigV4 (or a Bedrock API key as a bearer token).

Built on :class:`llmkernel_http.HTTPProvider` (pooled client on the aiohttp
transport, timeouts with the first-content rule, response headers, health, secret
redaction). Signing is its :meth:`BedrockProvider.auth` hook: an ``httpx.Auth`` flow
(:class:`~llmkernel_bedrock.auth.SigV4`) that the base applies to the exact request
sent on every path; the region (and the endpoints that follow from it) is resolved
before the first request; the model list is asked of another host (the control
plane) by its whole URL.

Secrets (the Bedrock API key, the AWS secret key and session token, and the values
of the ``Authorization`` and ``X-Amz-Security-Token`` headers sent) are scrubbed
from every error it raises and from its health detail, however the answer echoes
them; an error body is redacted before it is cut to length.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from llmkernel import errors, log
from llmkernel.provider import ProviderConfig
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelInfo,
    Response,
    StreamEvent,
    Usage,
)
from llmkernel_bedrock import convert
from llmkernel_bedrock.auth import AwsSigner, SigV4, resolve_region
from llmkernel_bedrock.errors import error_for, malformed, request_id
from llmkernel_bedrock.eventstream import EventStreamDecoder, EventStreamError
from llmkernel_bedrock.models import capabilities_for, model_list
from llmkernel_bedrock.parse import Malformed, count, parse_converse
from llmkernel_bedrock.settings import BedrockSettings
from llmkernel_bedrock.stream import StreamParser
from llmkernel_http import HTTPProvider, Secrets, collect_secrets, headers_of, redact, scrub

__all__ = ["EVENT_STREAM", "BedrockProvider"]

USER_AGENT = "llmkernel-bedrock/0.1.0"
EVENT_STREAM = "application/vnd.amazon.eventstream"
_SNIPPET = 200


def model_path(model: str, action: str) -> str:
    """``/model/{modelId}/{action}`` with the id percent-encoded (``:`` and the
    ``/`` of an ARN included), as AWS's rest-json protocol sends URI labels."""
    return f"/model/{quote(model, safe='')}/{action}"


class BedrockProvider(HTTPProvider):
    """One ``[providers.NAME]`` table with ``type = "bedrock"``."""

    settings_class = BedrockSettings
    settings: BedrockSettings

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.where = config.where or f"[providers.{config.name}]"
        self._signer: AwsSigner | None = None
        self._ready = False
        self.region: str | None = self.settings.region
        self.runtime_url = self.settings.base_url.rstrip("/")
        self.control_url = self.settings.control_url.rstrip("/")

    def __repr__(self) -> str:
        return f"<BedrockProvider {self.name!r} region={self.region!r}>"

    # ------------------------------------------------------------------ hooks

    def base_url(self) -> str:
        return self.runtime_url

    def default_headers(self) -> dict[str, str]:
        return {**super().default_headers(), "user-agent": USER_AGENT}

    def auth(self) -> SigV4 | None:
        """SigV4, unless a Bedrock API key (a bearer token) authenticates."""
        return SigV4(self._signer) if self._signer is not None else None

    def error_for_response(
        self, response: httpx.Response, body: bytes, model: str
    ) -> errors.ProviderError:
        # redacted before the message is cut to length: a cut could split a secret
        text = redact(body.decode("utf-8", "replace"), self.secrets(response.request.headers))
        error = error_for(
            response.status_code, text, headers_of(response), provider=self.name, model=model
        )
        log.debug(
            "llmkernel.bedrock.request.failed",
            provider=self.name,
            model=model,
            status=response.status_code,
            error=type(error).__name__,
        )
        return error

    def malformed(
        self, what: str, *, model: str, response: httpx.Response | None = None
    ) -> errors.MalformedResponseError:
        return malformed(
            what,
            provider=self.name,
            model=model,
            status=response.status_code if response is not None else None,
            rid=request_id(response.headers) if response is not None else None,
        )

    # ------------------------------------------------------------------ secrets

    def secrets(self, sent: Mapping[str, str] | None = None) -> Secrets:
        """The values to redact: the API key and configured headers' secrets, the
        signing credentials, and the secret header values ``sent``."""
        found = self._secrets
        if self._signer is not None and self._signer.secrets:
            found = collect_secrets(None, extra=(*found, *self._signer.secrets))
        if sent is not None:
            found = collect_secrets(None, sent, extra=found)
        return found

    def scrub(
        self, error: errors.ProviderError, sent: Mapping[str, str] | None = None
    ) -> errors.ProviderError:
        """Remove the secrets from ``error``'s message, code and headers, in place."""
        return scrub(error, self.secrets(sent))

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    # ------------------------------------------------------------------ sending

    async def _prepare(self, model: str) -> None:
        """At the first request: the API key, else the region and the credential
        chain; the endpoints that follow from the region."""
        if self._ready:
            return
        bearer = self.api_key(model) if self.settings.api_key_env else None
        if self.region is None and not (self.runtime_url and self.control_url and bearer):
            self.region = await asyncio.to_thread(
                resolve_region, self.settings.region, self.settings.profile
            )
        if self.region is None and not (self.runtime_url and bearer):
            raise errors.ConfigError(
                f'no AWS region for {self.where}: set region = "us-east-1" (say), '
                "AWS_REGION, or a region in the AWS profile"
            )
        if not self.runtime_url:
            self.runtime_url = f"https://bedrock-runtime.{self.region}.amazonaws.com"
        if not self.control_url:
            self.control_url = f"https://bedrock.{self.region}.amazonaws.com"
        if bearer is None:
            self._signer = AwsSigner(
                provider=self.name, region=self.region or "", profile=self.settings.profile
            )
        self._ready = True

    # ------------------------------------------------------------------ chat

    async def send_chat(self, request: ChatRequest) -> Response:
        model = request.model
        await self._prepare(model)
        body = convert.build_converse_body(request, self.settings, provider=self.name)
        data, response = await self.send_json(
            "POST", model_path(model, "converse"), model=model, json=body
        )
        headers = headers_of(response)
        try:
            return parse_converse(
                data, request.response_format, model=model, headers=headers, id=request_id(headers)
            )
        except Malformed as exc:
            raise self.malformed(str(exc), model=model, response=response) from None

    async def stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        model = request.model
        await self._prepare(model)
        body = convert.build_converse_body(request, self.settings, provider=self.name)
        response = await self.send(
            "POST",
            model_path(model, "converse-stream"),
            model=model,
            json=body,
            headers={"accept": EVENT_STREAM},
        )
        try:
            async for event in self._read_stream(response, model):
                yield event
        except errors.ProviderError as exc:
            self.scrub(exc, response.request.headers)
            raise
        finally:
            await response.aclose()

    async def _read_stream(
        self, response: httpx.Response, model: str
    ) -> AsyncGenerator[StreamEvent, None]:
        headers = headers_of(response)
        rid = request_id(headers)
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != EVENT_STREAM:
            raw = await self.read_body(response, model)
            text = redact(raw.decode("utf-8", "replace"), self.secrets(response.request.headers))
            error = error_for(200, text, headers, provider=self.name, model=model)
            if error.code:  # a JSON error body with a 200 (a proxy)
                raise error
            snippet = " ".join(text.split())[:_SNIPPET]
            raise self.malformed(
                f"expected {EVENT_STREAM}, got {media_type or 'no content type'}: {snippet!r}",
                model=model,
                response=response,
            )
        decoder = EventStreamDecoder()
        parser = StreamParser(provider=self.name, model=model, headers=headers)
        chunks = response.aiter_bytes()
        try:
            async for chunk in chunks:
                try:
                    frames = decoder.feed(chunk)
                except EventStreamError as exc:
                    raise self.malformed(str(exc), model=model, response=response) from None
                for frame in frames:
                    for event in parser.feed(frame):
                        yield event
        except httpx.RequestError as exc:
            error = self.error_for_transport(exc, model)
            error.request_id = rid
            if decoder.pending:
                error.message = (
                    f"the stream was cut off mid-frame ({decoder.pending} bytes of an "
                    f"unfinished event-stream frame): {error.message}"
                )
            elif parser.stop_reason is None:
                error.message = (
                    f"the stream was cut off before its messageStop event: {error.message}"
                )
            raise error from exc
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        if decoder.pending:
            raise errors.NetworkError(
                f"the stream was cut off mid-frame ({decoder.pending} bytes of an "
                "unfinished event-stream frame)",
                provider=self.name,
                model=model,
                request_id=rid,
            )
        for event in parser.end():
            yield event

    # ------------------------------------------------------------------ embeddings

    async def send_embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        model = request.model
        family = convert.embedding_family(model)
        if family is None:
            raise errors.InvalidRequestError(
                f"{model!r} is not an embedding model this provider knows: Bedrock "
                "embeddings work with amazon.titan-embed-* and cohere.embed-* models",
                provider=self.name,
                model=model,
            )
        await self._prepare(model)
        path = model_path(model, "invoke")
        vectors: list[list[float]] = []
        usage = Usage()
        headers: dict[str, str] = {}
        batches: Sequence[Sequence[str]]
        if family == "titan":
            batches = [[text] for text in request.inputs]
        else:
            size = self.settings.embedding_batch_size
            batches = [request.inputs[i : i + size] for i in range(0, len(request.inputs), size)]
        for batch in batches:
            body = (
                convert.titan_embed_body(request, batch[0])
                if family == "titan"
                else convert.cohere_embed_body(request, batch, self.settings)
            )
            data, response = await self.send_json("POST", path, model=model, json=body)
            headers = headers_of(response)
            got, tokens = self._vectors(data, family, len(batch), model)
            vectors.extend(got)
            counted = headers.get("x-amzn-bedrock-input-token-count")
            if counted and counted.isdigit():
                tokens = int(counted)
            usage = usage + Usage(input_tokens=tokens)
        return EmbeddingResponse(
            vectors=vectors, model=model, provider=self.name, usage=usage, headers=headers
        )

    def _vectors(
        self, data: Any, family: str, expected: int, model: str
    ) -> tuple[list[list[float]], int]:
        def bad(what: str) -> errors.MalformedResponseError:
            return malformed(what, provider=self.name, model=model)

        if not isinstance(data, Mapping):
            raise bad("the embeddings answer is not a JSON object")
        if family == "titan":
            raw: Any = [data.get("embedding")]
            tokens = count(data.get("inputTextTokenCount"))
        else:
            raw = data.get("embeddings")
            if isinstance(raw, Mapping):  # embedding_types asked: {"float": [...]}
                raw = raw.get("float")
            tokens = 0
        if not isinstance(raw, list) or len(raw) != expected:
            raise bad(f"expected {expected} embeddings in the answer")
        vectors = []
        for vector in raw:
            if not isinstance(vector, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in vector
            ):
                raise bad("an embedding is not a list of numbers")
            vectors.append([float(x) for x in vector])
        return vectors, tokens

    # ------------------------------------------------------------------ models

    async def fetch_models(self) -> list[ModelInfo]:
        """The foundation models of the region (``GET /foundation-models`` on the
        Bedrock control plane)."""
        await self._prepare("")
        data, response = await self.send_json(
            "GET", f"{self.control_url}/foundation-models", model=""
        )
        models = model_list(data, self.name)
        if models is None:
            raise self.malformed(
                'expected {"modelSummaries": [...]} listing the models', model="", response=response
            )
        return models

    def declared_models(self) -> list[str]:
        return list(self.settings.models)

    def capabilities(self, model: str) -> Capabilities | None:
        return capabilities_for(model)
