"""The Bedrock provider: the Converse and ConverseStream APIs of Bedrock Runtime,
InvokeModel for Titan and Cohere embeddings, and the Bedrock control plane's
ListFoundationModels, over one pooled httpx client, signed with SigV4."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from llmkernel import errors, log
from llmkernel.http import (
    Secrets,
    collect_secrets,
    error_for_transport,
    make_client,
    read_json,
    redact,
    scrub,
    send,
)
from llmkernel.options import parse_options
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Health,
    ModelInfo,
    Response,
    StreamEvent,
    Usage,
)
from llmkernel_bedrock import convert
from llmkernel_bedrock.auth import AwsSigner, HiddenKey, resolve_region
from llmkernel_bedrock.errors import error_for, malformed, request_id
from llmkernel_bedrock.eventstream import EventStreamDecoder, EventStreamError
from llmkernel_bedrock.models import capabilities_for, model_list
from llmkernel_bedrock.parse import Malformed, count, parse_converse
from llmkernel_bedrock.settings import BedrockSettings
from llmkernel_bedrock.stream import StreamParser

__all__ = ["EVENT_STREAM", "BedrockProvider"]

USER_AGENT = "llmkernel-bedrock/0.1.0"
EVENT_STREAM = "application/vnd.amazon.eventstream"
_SNIPPET = 200


def model_path(model: str, action: str) -> str:
    """``/model/{modelId}/{action}`` with the id percent-encoded (``:`` and the
    ``/`` of an ARN included), as AWS's rest-json protocol sends URI labels."""
    return f"/model/{quote(model, safe='')}/{action}"


class BedrockProvider(Provider):
    """One ``[providers.NAME]`` table with ``type = "bedrock"``."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.where = config.where or f"[providers.{config.name}]"
        self.settings = parse_options(BedrockSettings, config.options, where=self.where)
        self.call_timeout = self.settings.timeout
        self._transport = config.transport
        self._client: httpx.AsyncClient | None = None
        self._signer: AwsSigner | None = None
        self._bearer: str | None = None
        self._secrets = Secrets()
        self.region: str | None = self.settings.region
        self.base_url = self.settings.base_url.rstrip("/")
        self.control_url = self.settings.control_url.rstrip("/")

    def __repr__(self) -> str:
        return f"<BedrockProvider {self.name!r} region={self.region!r}>"

    # ------------------------------------------------------------------ plumbing

    async def _http(self, model: str) -> httpx.AsyncClient:
        """The pooled client, built at the first request, when the region, the key
        or the credential chain are read."""
        if self._client is not None:
            return self._client
        settings = self.settings
        if settings.api_key_env:
            key = settings.api_key(provider=self.name, model=model)
            self._bearer = HiddenKey(key) if key else None
            if self._bearer:
                self._secrets = collect_secrets(
                    self._bearer, {"authorization": f"Bearer {self._bearer}"}, settings.headers
                )
        if self.region is None:
            needs_region = not (self.base_url and self.control_url and self._bearer)
            if needs_region:
                self.region = await asyncio.to_thread(
                    resolve_region, settings.region, settings.profile
                )
        if self.region is None and not (self.base_url and self._bearer):
            raise errors.ConfigError(
                f'no AWS region for {self.where}: set region = "us-east-1" (say), '
                "AWS_REGION, or a region in the AWS profile"
            )
        if not self.base_url:
            self.base_url = f"https://bedrock-runtime.{self.region}.amazonaws.com"
        if not self.control_url:
            self.control_url = f"https://bedrock.{self.region}.amazonaws.com"
        if self._bearer is None:
            self._signer = AwsSigner(
                provider=self.name, region=self.region or "", profile=settings.profile
            )
        self._client = make_client(
            settings,
            base_url=self.base_url,
            headers={"user-agent": USER_AGENT},
            transport=self._transport,
        )
        return self._client

    async def _request(
        self,
        method: str,
        url: str,
        *,
        model: str,
        body: Mapping[str, Any] | None = None,
        accept: str = "application/json",
    ) -> httpx.Response:
        """Build, sign and send a request; the open response once its status is a
        success (the caller reads and closes it), else the kernel error for it."""
        client = await self._http(model)
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        headers = {"accept": accept}
        if body is not None:
            headers["content-type"] = "application/json"
        request = client.build_request(method, url, content=content, headers=headers)
        if self._bearer is not None:
            request.headers["authorization"] = f"Bearer {self._bearer}"
        elif self._signer is not None:
            signed = await self._signer.sign(
                method, str(request.url), headers, content, model=model
            )
            request.headers.update(signed)
        log.debug("llmkernel.bedrock.request.sent", provider=self.name, model=model, url=url)
        try:
            return await send(
                client,
                request,
                provider=self.name,
                model=model,
                error_for=lambda response, raw: self._failed(
                    response, raw, model, sent=request.headers
                ),
            )
        except errors.ProviderError as exc:
            self.scrub(exc, request.headers)
            raise

    # ------------------------------------------------------------------ secrets

    def secrets(self, sent: Mapping[str, str] | None = None) -> Secrets:
        """The values to redact: the API key or the signing credentials, the
        configured headers' secrets, and those of the headers ``sent``."""
        found = self._secrets
        if self._signer is not None:
            found = collect_secrets(
                None, self.settings.headers, extra=(*found, *self._signer.secrets)
            )
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

    def _failed(
        self, response: httpx.Response, raw: bytes, model: str, *, sent: Mapping[str, str]
    ) -> errors.ProviderError:
        # redacted before the message is cut to length: a cut could split a secret
        text = redact(raw.decode("utf-8", "replace"), self.secrets(sent))
        error = error_for(
            response.status_code,
            text,
            dict(response.headers),
            provider=self.name,
            model=model,
        )
        log.debug(
            "llmkernel.bedrock.request.failed",
            provider=self.name,
            model=model,
            status=response.status_code,
            error=type(error).__name__,
        )
        return error

    async def _json(self, response: httpx.Response, model: str) -> Any:
        return await read_json(
            response,
            provider=self.name,
            model=model,
            malformed=lambda snippet: malformed(
                f"the body is not JSON: {snippet!r}",
                provider=self.name,
                model=model,
                status=response.status_code,
                rid=request_id(response.headers),
            ),
        )

    def _timeout(self, model: str, what: str, seconds: float) -> errors.TimeoutError:
        return errors.TimeoutError(
            f"{what} within the {seconds:g}s timeout", provider=self.name, model=model
        )

    # ------------------------------------------------------------------ chat

    async def chat(self, request: ChatRequest) -> Response:
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await self._chat(request)
        except TimeoutError:
            raise self._timeout(
                request.model, "no complete answer", self.settings.timeout
            ) from None
        except errors.ProviderError as exc:
            self.scrub(exc)
            raise

    async def _chat(self, request: ChatRequest) -> Response:
        model = request.model
        body = convert.build_converse_body(request, self.settings, provider=self.name)
        response = await self._request(
            "POST", model_path(model, "converse"), model=model, body=body
        )
        data = await self._json(response, model)
        headers = dict(response.headers)
        try:
            return parse_converse(
                data, request.response_format, model=model, headers=headers, id=request_id(headers)
            )
        except Malformed as exc:
            raise malformed(
                str(exc),
                provider=self.name,
                model=model,
                status=response.status_code,
                rid=request_id(response.headers),
            ) from None

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Events as the frames arrive; ``first_token_timeout`` bounds the wait for
        the first event and ``timeout`` the whole stream (the reads only)."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.timeout
        first_deadline = deadline
        if settings.first_token_timeout is not None:
            first_deadline = min(deadline, loop.time() + settings.first_token_timeout)
        inner = self._stream(request)
        first = True
        try:
            while True:
                try:
                    async with asyncio.timeout_at(first_deadline if first else deadline):
                        event = await anext(inner)
                except StopAsyncIteration:
                    return
                except errors.ProviderError as exc:
                    self.scrub(exc)
                    raise
                except TimeoutError:
                    if first and first_deadline < deadline:
                        raise self._timeout(
                            request.model, "no first event", settings.first_token_timeout or 0.0
                        ) from None
                    raise self._timeout(
                        request.model, "the stream did not finish", settings.timeout
                    ) from None
                first = False
                yield event
        finally:
            await inner.aclose()

    async def _stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        model = request.model
        body = convert.build_converse_body(request, self.settings, provider=self.name)
        response = await self._request(
            "POST",
            model_path(model, "converse-stream"),
            model=model,
            body=body,
            accept=EVENT_STREAM,
        )
        try:
            headers = dict(response.headers)
            rid = request_id(headers)
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != EVENT_STREAM:
                raw = await response.aread()
                error = error_for(
                    200, raw.decode("utf-8", "replace"), headers, provider=self.name, model=model
                )
                if error.code:  # a JSON error body with a 200 (a proxy)
                    raise error
                snippet = " ".join(raw.decode("utf-8", "replace").split())[:_SNIPPET]
                raise malformed(
                    f"expected {EVENT_STREAM}, got {media_type or 'no content type'}: {snippet!r}",
                    provider=self.name,
                    model=model,
                    status=response.status_code,
                    rid=rid,
                )
            decoder = EventStreamDecoder()
            parser = StreamParser(provider=self.name, model=model, headers=headers)
            chunks = response.aiter_bytes()
            try:
                async for chunk in chunks:
                    try:
                        frames = decoder.feed(chunk)
                    except EventStreamError as exc:
                        raise malformed(
                            str(exc), provider=self.name, model=model, status=200, rid=rid
                        ) from None
                    for frame in frames:
                        for event in parser.feed(frame):
                            yield event
            except httpx.RequestError as exc:
                error = error_for_transport(exc, provider=self.name, model=model)
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
        except errors.ProviderError as exc:
            self.scrub(exc, response.request.headers)
            raise
        finally:
            await response.aclose()

    # ------------------------------------------------------------------ embeddings

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await self._embed(request)
        except TimeoutError:
            raise self._timeout(request.model, "no embeddings", self.settings.timeout) from None
        except errors.ProviderError as exc:
            self.scrub(exc)
            raise

    async def _embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        model = request.model
        family = convert.embedding_family(model)
        if family is None:
            raise errors.InvalidRequestError(
                f"{model!r} is not an embedding model this provider knows: Bedrock "
                "embeddings work with amazon.titan-embed-* and cohere.embed-* models",
                provider=self.name,
                model=model,
            )
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
            response = await self._request("POST", path, model=model, body=body)
            data = await self._json(response, model)
            headers = dict(response.headers)
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

    async def list_models(self) -> list[ModelInfo]:
        """The foundation models of the region (``GET /foundation-models`` on the
        Bedrock control plane)."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                await self._http("")
                response = await self._request(
                    "GET", f"{self.control_url}/foundation-models", model=""
                )
                data = await self._json(response, "")
        except TimeoutError:
            raise self._timeout("", "no model list", self.settings.timeout) from None
        except errors.ProviderError as exc:
            self.scrub(exc)
            raise
        models = model_list(data, self.name)
        if models is None:
            raise malformed(
                'expected {"modelSummaries": [...]} listing the models',
                provider=self.name,
                model="",
                status=response.status_code,
                rid=request_id(response.headers),
            )
        return models

    async def health(self) -> Health:
        started = time.perf_counter()
        try:
            models = await self.list_models()
        except Exception as exc:  # a health check reports, never raises
            if isinstance(exc, errors.ProviderError):
                self.scrub(exc)
            return Health(
                ok=False,
                latency=time.perf_counter() - started,
                detail=self.redact(f"{type(exc).__name__}: {exc}"),
            )
        return Health(
            ok=True, latency=time.perf_counter() - started, detail=f"{len(models)} models listed"
        )

    def declared_models(self) -> list[str]:
        return list(self.settings.models)

    def capabilities(self, model: str) -> Capabilities | None:
        return capabilities_for(model)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
