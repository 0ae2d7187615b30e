"""The ``[providers.NAME]`` keys of an ``azure`` instance."""

from __future__ import annotations

from typing import Literal

import attrs

from llmkernel_openai.settings import OpenAISettings

__all__ = ["DEFAULT_API_VERSION", "ENTRA_SCOPE", "AzureSettings"]

#: The latest GA dated API version (Azure OpenAI API version lifecycle, read
#: 2026-11-30), used with ``api = "deployments"`` when none is set.
DEFAULT_API_VERSION = "2024-10-21"
#: The token scope of Azure OpenAI (Cognitive Services) for Entra ID.
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
#: OpenAI's keys that mean nothing to Azure (its URL, key header and presets are fixed).
_NOT_AZURE = ("preset", "organization", "project", "api_key_required", "api_key_header")


@attrs.frozen(kw_only=True)
class AzureSettings(OpenAISettings):
    """Options of an ``azure`` provider instance (OpenAI's, for the shared keys such
    as ``embedding_batch_size``, ``send_reasoning`` and ``max_tokens_field``).

    ``endpoint`` is the resource endpoint (``https://<resource>.openai.azure.com``).
    ``api = "v1"`` (the default) calls ``{endpoint}/openai/v1/...`` with the
    deployment name as ``model``; ``api = "deployments"`` calls
    ``{endpoint}/openai/deployments/{deployment}/...?api-version=...``.
    ``deployments`` maps the model names used in llmkernel to deployment names
    (a model not in it is taken as a deployment name).

    Auth, first that applies: ``token_command`` (a command printing a bearer token,
    e.g. the Azure CLI's), ``entra = true`` (azure-identity's
    ``DefaultAzureCredential``, installed with ``llmkernel-azure[entra]``), else the
    key in ``api_key_env`` sent as the ``api-key`` header.
    """

    endpoint: str = ""
    api: Literal["v1", "deployments"] = "v1"
    deployments: dict[str, str] = attrs.field(factory=dict)
    api_key_env: str | None = "AZURE_OPENAI_API_KEY"
    token_command: list[str] | None = None
    #: seconds a token from ``token_command`` is reused before running it again
    token_ttl: float = 300.0
    entra: bool = False
    entra_scope: str = ENTRA_SCOPE

    def __attrs_post_init__(self) -> None:
        if self.base_url:
            raise ValueError("an azure provider takes endpoint = ..., not base_url")
        for name in _NOT_AZURE:
            if getattr(self, name) is not None:
                raise ValueError(f"an azure provider does not take {name}")
        if not self.endpoint.startswith(("https://", "http://")):
            raise ValueError(
                "endpoint must be the resource URL, such as https://my-resource.openai.azure.com"
            )
        if self.token_command is not None and not self.token_command:
            raise ValueError("token_command must name a command")

    def resolved(self) -> AzureSettings:
        """No presets for Azure: the settings as given."""
        return self

    @property
    def token_auth(self) -> bool:
        """Whether a bearer token (``token_command`` or Entra ID) replaces the key."""
        return self.token_command is not None or self.entra

    @property
    def version(self) -> str | None:
        """The ``api-version`` query parameter to send, if any."""
        if self.api_version:
            return self.api_version
        return DEFAULT_API_VERSION if self.api == "deployments" else None
