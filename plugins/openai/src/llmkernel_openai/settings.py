"""The ``[providers.NAME]`` keys of an ``openai`` instance, and the presets."""

from __future__ import annotations

from typing import Literal, TypeAlias
from urllib.parse import urlsplit

import attrs

from llmkernel_http import HTTPSettings

OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENAI_KEY_ENV = "OPENAI_API_KEY"

PresetName: TypeAlias = Literal[
    "openai",
    "groq",
    "together",
    "deepseek",
    "openrouter",
    "mistral",
    "vllm",
    "lmstudio",
    "llamacpp",
]


@attrs.frozen(kw_only=True)
class Preset:
    """Defaults for a well-known OpenAI-compatible server."""

    base_url: str
    api_key_env: str | None
    api_key_required: bool = True
    #: a server on this machine: named by its preset only (a local URL may be anything)
    local: bool = False


PRESETS: dict[str, Preset] = {
    "openai": Preset(base_url=OPENAI_BASE_URL, api_key_env=OPENAI_KEY_ENV),
    "groq": Preset(base_url="https://api.groq.com/openai/v1", api_key_env="GROQ_API_KEY"),
    "together": Preset(base_url="https://api.together.xyz/v1", api_key_env="TOGETHER_API_KEY"),
    "deepseek": Preset(base_url="https://api.deepseek.com/v1", api_key_env="DEEPSEEK_API_KEY"),
    "openrouter": Preset(base_url="https://openrouter.ai/api/v1", api_key_env="OPENROUTER_API_KEY"),
    "mistral": Preset(base_url="https://api.mistral.ai/v1", api_key_env="MISTRAL_API_KEY"),
    "vllm": Preset(
        base_url="http://localhost:8000/v1", api_key_env=None, api_key_required=False, local=True
    ),
    "lmstudio": Preset(
        base_url="http://localhost:1234/v1", api_key_env=None, api_key_required=False, local=True
    ),
    "llamacpp": Preset(
        base_url="http://localhost:8080/v1", api_key_env=None, api_key_required=False, local=True
    ),
}


@attrs.frozen(kw_only=True)
class OpenAISettings(HTTPSettings):
    """Options of an ``openai`` provider instance.

    ``base_url``, ``api_key_env`` and ``api_key_required`` left unset take the
    ``preset``'s values, else OpenAI's (``https://api.openai.com/v1``,
    ``OPENAI_API_KEY``, required). With ``api_key_required = false`` and no
    ``api_key_env``, no key is sent at all (so ``OPENAI_API_KEY`` never reaches a
    local server).
    """

    preset: PresetName | None = None
    organization: str | None = None  # OpenAI-Organization header
    project: str | None = None  # OpenAI-Project header
    api_version: str | None = None  # ?api-version= on every request (Azure-style servers)
    api_key_required: bool | None = None
    api_key_header: str | None = None  # send the bare key in this header (Azure: "api-key")
    embedding_batch_size: int = attrs.field(default=2048)
    send_reasoning: bool = False  # send ReasoningPart text back as reasoning_content
    #: the body key for a request's max_tokens: "max_completion_tokens" (OpenAI's
    #: own API, the default when it is the server) or "max_tokens" (the default
    #: for other servers, except for OpenAI reasoning model names).
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    #: the chat wire: "chat" (Chat Completions, every compatible server) or
    #: "responses" (OpenAI's Responses API: models served only there, reasoning
    #: carried over between turns as encrypted content)
    wire_api: Literal["chat", "responses"] = "chat"

    @embedding_batch_size.validator
    def _positive(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ValueError(f"embedding_batch_size must be at least 1, not {value}")

    def resolved(self) -> OpenAISettings:
        """These settings with the preset's (or OpenAI's) defaults filled in."""
        preset = PRESETS[self.preset or "openai"]
        required = self.api_key_required
        if required is None:
            required = preset.api_key_required
        key_env = self.api_key_env
        if key_env is None and (required or self.preset is not None):
            key_env = preset.api_key_env
        return attrs.evolve(
            self,
            base_url=(self.base_url or preset.base_url).rstrip("/"),
            api_key_env=key_env or None,
            api_key_required=required,
            max_tokens_field=self.max_tokens_field or self._default_max_tokens_field(),
        )

    def price_preset(self) -> str | None:
        """Whose published prices apply to this instance: its ``preset`` when set
        (``preset = "openai"`` on a proxy's ``base_url`` keeps OpenAI's prices); else
        the hosted preset whose API host ``base_url`` is on (none: OpenAI's own API,
        ``api.groq.com``: Groq...); else ``None``, a custom server, unpriced. Local
        presets only by name: a server on localhost may be anything."""
        if self.preset is not None:
            return self.preset
        host = urlsplit(self.base_url or OPENAI_BASE_URL).hostname
        for name, preset in PRESETS.items():
            if not preset.local and urlsplit(preset.base_url).hostname == host:
                return name
        return None

    def _default_max_tokens_field(self) -> Literal["max_tokens", "max_completion_tokens"] | None:
        """OpenAI's own API (``preset = "openai"``, or no preset and a base_url that
        is OpenAI's or unset) takes ``max_completion_tokens`` for every model."""
        if self.preset == "openai" or (
            self.preset is None
            and (not self.base_url or urlsplit(self.base_url).hostname == "api.openai.com")
        ):
            return "max_completion_tokens"
        return None
