"""The ``[providers.NAME]`` keys a Bedrock provider accepts."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from llmkernel_http import HTTPSettings

__all__ = ["BedrockSettings", "CachePoint"]

CachePoint = Literal["system", "tools", "messages"]


@attrs.frozen(kw_only=True)
class BedrockSettings(HTTPSettings):
    """Bedrock's settings: the shared HTTP keys plus AWS's own.

    Requests are signed with SigV4 using the standard AWS credential chain (env,
    shared config and credentials files with ``profile``, SSO cache, container and
    instance metadata) through botocore. Set ``api_key_env`` to use a Bedrock API
    key (a bearer token, ``AWS_BEARER_TOKEN_BEDROCK``) instead.

    ``base_url`` is the Bedrock Runtime endpoint (default
    ``https://bedrock-runtime.<region>.amazonaws.com``), ``control_url`` the Bedrock
    control-plane endpoint used to list models (default
    ``https://bedrock.<region>.amazonaws.com``).
    """

    #: AWS region; else ``AWS_REGION``, ``AWS_DEFAULT_REGION`` or the profile's region.
    region: str | None = None
    #: named profile of the shared config/credentials files (else ``AWS_PROFILE``).
    profile: str | None = None
    control_url: str = ""
    #: where to put ``cachePoint`` blocks by default ("system", "tools", "messages").
    cache_points: list[CachePoint] = attrs.field(factory=list)
    #: sent as ``additionalModelRequestFields`` with every Converse request.
    additional_model_request_fields: dict[str, Any] = attrs.field(factory=dict)
    #: ``input_type`` for Cohere embedding models.
    embedding_input_type: str = "search_document"
    #: texts per InvokeModel call for Cohere embedding models (their limit is 96).
    embedding_batch_size: int = 96

    def __attrs_post_init__(self) -> None:
        if self.embedding_batch_size < 1:
            raise ValueError("embedding_batch_size must be at least 1")
