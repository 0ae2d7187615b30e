"""The ``azure`` provider: Azure OpenAI's Chat Completions, Embeddings and Models,
through the v1 API or the dated deployment URLs.

A subclass of llmkernel-openai's :class:`~llmkernel_openai.provider.OpenAIProvider`
(itself on :class:`llmkernel_http.HTTPProvider`: client and transport, timeouts,
response headers, secret redaction, health): the bodies, answers, stream chunks and
error bodies are OpenAI's. This module adds Azure's URLs (``path``, ``base_url``,
``query_params``), auth (``api-key``, or bearer tokens per request through the
``auth`` hook, an ``httpx.Auth`` flow), deployment
names in the bodies, and the content filter (errors and refusals naming the
filtered categories).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from llmkernel import errors as kerrors
from llmkernel import log
from llmkernel.provider import ProviderConfig
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    Response,
    replace,
)
from llmkernel_azure import errors as azure_errors
from llmkernel_azure.auth import BearerTokens, Credentials
from llmkernel_azure.settings import AzureSettings
from llmkernel_http import redact, scrub
from llmkernel_openai.models import capabilities_for
from llmkernel_openai.provider import OpenAIProvider, Operation

__all__ = ["AzureProvider"]

USER_AGENT = "llmkernel-azure/0.1.0"


class AzureProvider(OpenAIProvider):
    """One ``[providers.NAME]`` table with ``type = "azure"``."""

    settings_class = AzureSettings
    settings: AzureSettings

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.endpoint = self.settings.endpoint.rstrip("/")
        self._credentials = Credentials(provider=self.name, settings=self.settings)

    def __repr__(self) -> str:
        return f"<AzureProvider {self.name!r} endpoint={self.endpoint!r} api={self.settings.api!r}>"

    # ------------------------------------------------------------------ hooks

    def base_url(self) -> str:
        return self.endpoint

    def default_headers(self) -> dict[str, str]:
        return {**super().default_headers(), "user-agent": USER_AGENT}

    def api_key(self, model: str = "") -> str | None:
        """The ``api_key_env`` key, or none when a bearer token authenticates."""
        if self.settings.token_auth:
            return None
        return self.settings.api_key(provider=self.name, model=model)

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"api-key": key}

    def query_params(self) -> Mapping[str, str]:
        version = self.settings.version
        return {"api-version": version} if version else {}

    def deployment(self, model: str) -> str:
        """The deployment serving ``model`` (``deployments`` in config, else itself)."""
        return self.settings.deployments.get(model, model)

    def path(self, operation: Operation, model: str) -> str:
        """``/openai/v1/...`` (v1), or ``/openai/deployments/{deployment}/...`` and
        ``/openai/models`` (the dated API)."""
        name = "chat/completions" if operation == "chat" else operation
        if self.settings.api == "v1":
            return f"/openai/v1/{name}"
        if operation == "models":
            return "/openai/models"
        return f"/openai/deployments/{quote(self.deployment(model), safe='')}/{name}"

    def chat_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body = super().chat_body(request, stream=stream)
        body["model"] = self.deployment(request.model)
        return body

    def error_for_response(
        self, response: httpx.Response, body: bytes, model: str
    ) -> kerrors.ProviderError:
        error = azure_errors.for_response(response, provider=self.name, model=model)
        log.debug(
            "llmkernel.azure.request.failed",
            provider=self.name,
            model=model,
            status=response.status_code,
            error=type(error).__name__,
        )
        return error

    def redact(self, text: str) -> str:
        return redact(super().redact(text), self._credentials.secrets)

    def scrub(self, error: kerrors.ProviderError) -> kerrors.ProviderError:
        """Removes the API key and the bearer tokens (current and recent)."""
        return scrub(super().scrub(error), self._credentials.secrets)

    def auth(self) -> BearerTokens | None:
        """The bearer token on each request (fetched or refreshed first) when a token
        authenticates (``token_command`` or ``entra``); else the ``api-key`` header."""
        return BearerTokens(self._credentials) if self.settings.token_auth else None

    # ------------------------------------------------------------------ answers

    def parse_answer(self, data: Any, request: ChatRequest, response: httpx.Response) -> Response:
        """OpenAI's answer; a refusal names the content filter's categories."""
        answer = super().parse_answer(data, request, response)
        refusal = answer.refusal or azure_errors.filter_summary(data)
        return answer if refusal == answer.refusal else replace(answer, refusal=refusal)

    def stream_refusal(self, data: Any) -> str | None:
        """The categories a chunk's ``content_filter_results`` filtered."""
        return azure_errors.filter_summary(data)

    def request_id(self, headers: httpx.Headers) -> str | None:
        return azure_errors.request_id(headers)

    def embedding_body(self, request: EmbeddingRequest, batch: list[str]) -> dict[str, Any]:
        """OpenAI's body, with the deployment as its ``model``."""
        body = super().embedding_body(request, batch)
        body["model"] = self.deployment(request.model)
        return body

    # ------------------------------------------------------------------ models

    def declared_models(self) -> list[str]:
        names = list(self.settings.models)
        names += [m for m in self.settings.deployments if m not in names]
        return names

    def capabilities(self, model: str) -> Capabilities | None:
        """OpenAI's known capabilities for ``model``, or for the deployment's name."""
        return capabilities_for(model) or capabilities_for(self.deployment(model))
