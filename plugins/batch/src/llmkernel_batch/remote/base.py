"""What every provider batch adapter shares: settings from the kernel's config, the
HTTP client, status names, and the parsed shape of one answer."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import attrs

from llmkernel.types import Usage

if TYPE_CHECKING:
    import httpx

    from llmkernel.kernel import Kernel
    from llmkernel.types import ChatRequest
    from llmkernel_batch.items import BatchItem
    from llmkernel_batch.store import BatchJob

__all__ = [
    "Endpoint",
    "Parsed",
    "Remote",
    "RemoteError",
    "Status",
    "adapter_for",
    "error_kind_for_status",
    "jsonl",
    "request_body",
    "settings_for",
]

T = TypeVar("T")

#: a provider batch's state in one vocabulary (each provider's own is kept in info)
Status = Literal["in_progress", "completed", "failed", "expired", "cancelling", "cancelled"]
FINAL = ("completed", "failed", "expired", "cancelled")

_DEFAULTS: dict[str, tuple[str, str]] = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ("https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "gemini": ("https://generativelanguage.googleapis.com", "GEMINI_API_KEY"),
}


class RemoteError(Exception):
    """A provider batch call failed: the message names the call and the status,
    never a key."""


@attrs.frozen(kw_only=True)
class Parsed:
    """One answer from a batch's results: ``custom_id`` and either the response
    (``text``, ``tool_calls``, ``finish_reason``, ``usage``) or ``error_kind`` and
    ``error_message``."""

    custom_id: str
    ok: bool
    text: str = ""
    tool_calls: Sequence[Mapping[str, Any]] = ()
    finish_reason: str = "stop"
    usage: Usage = attrs.field(factory=Usage)
    id: str | None = None
    model: str = ""
    error_kind: str | None = None
    error_message: str | None = None


@attrs.frozen(kw_only=True)
class Endpoint:
    """Where a provider instance lives and how to authenticate; ``api_key`` is
    never shown."""

    name: str
    type: str
    base_url: str
    api_key: str | None = attrs.field(default=None, repr=False)
    options: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


def endpoint(kernel: Kernel, provider: str) -> Endpoint:
    """The instance's ``base_url`` and key (read from ``api_key_env``), from the
    kernel's config (``[providers.<name>]``), with each provider type's defaults."""
    from llmkernel.errors import ConfigError

    section = kernel.config.providers.get(provider)
    ptype = section.type if section is not None else provider
    if ptype not in _DEFAULTS:
        raise ConfigError(
            f"provider {provider!r} (type {ptype!r}) has no batch API here; provider "
            f"batches work with types {', '.join(sorted(_DEFAULTS))}"
        )
    options: Mapping[str, Any] = section.options if section is not None else {}
    base, key_env = _DEFAULTS[ptype]
    base_url = str(options.get("base_url") or base).rstrip("/")
    if ptype == "anthropic" and base_url.endswith("/v1"):
        base_url = base_url[: -len("/v1")]
    env = options.get("api_key_env", key_env)
    key = os.environ.get(str(env)) if env else None
    if env and not key:
        raise ConfigError(
            f"provider {provider!r} needs an API key in ${env} for its batch API (not set)"
        )
    return Endpoint(name=provider, type=ptype, base_url=base_url, api_key=key, options=options)


class Remote(Protocol):
    """A provider's batch API."""

    async def submit(self, items: Sequence[BatchItem], model: str) -> tuple[str, Status, Any]: ...

    async def poll(self, job: BatchJob) -> tuple[Status, Any]: ...

    async def results(self, job: BatchJob, info: Any) -> list[Parsed]: ...

    async def cancel(self, job: BatchJob) -> tuple[Status, Any]: ...

    async def aclose(self) -> None: ...


def adapter_for(kernel: Kernel, provider: str, *, client: httpx.AsyncClient | None = None) -> Any:
    where = endpoint(kernel, provider)
    if where.type == "openai":
        from llmkernel_batch.remote.openai import OpenAIBatches

        return OpenAIBatches(where, client)
    try:
        if where.type == "anthropic":
            from llmkernel_batch.remote.anthropic import AnthropicBatches

            return AnthropicBatches(where, client)
        from llmkernel_batch.remote.gemini import GeminiBatches

        return GeminiBatches(where, client)
    except ModuleNotFoundError as exc:
        from llmkernel.errors import ConfigError

        package = f"llmkernel-{where.type}"
        raise ConfigError(
            f"provider {provider!r}: {where.type} batches build their requests with the "
            f"{where.type} plugin ({package}), which is not installed ({exc.name})"
        ) from None


def error_kind_for_status(status: int | None) -> str:
    return {
        400: "invalid_request",
        401: "authentication",
        403: "permission",
        404: "not_found",
        413: "invalid_request",
        429: "rate_limit",
        529: "overloaded",
    }.get(status or 0, "server" if status and status >= 500 else "provider")


def jsonl(text: str) -> list[Any]:
    out = []
    for raw in text.splitlines():
        if raw.strip():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return out


class Http:
    """An httpx client for one endpoint; errors become :class:`RemoteError` naming
    the call and status (never the key)."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str], client: httpx.AsyncClient | None
    ) -> None:
        import httpx

        self.base_url = base_url
        self.headers = dict(headers)
        self._own = client is None
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0))

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        try:
            response = await self.client.request(
                method, url, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
            )
        except httpx.HTTPError as exc:
            raise RemoteError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise RemoteError(
                f"{method} {path}: HTTP {response.status_code}: {_snippet(response.text)}"
            )
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise RemoteError(f"{method} {path}: not JSON: {_snippet(response.text)}") from None

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()


def request_body(
    item: BatchItem, model: str, build: Callable[[ChatRequest], dict[str, Any]]
) -> dict[str, Any]:
    """``item``'s line as the body the provider's chat call sends: the kernel's
    :class:`ChatRequest` for ``model`` (the provider's own name) turned into JSON by
    ``build``, the provider plugin's converter; a line either refuses fails the
    batch, naming the line."""
    from llmkernel import convert
    from llmkernel.errors import LLMKernelError
    from llmkernel_batch.items import call_arguments

    try:
        return build(convert.chat_request(**{**call_arguments(item), "model": model}))
    except LLMKernelError as exc:
        raise RemoteError(f"line {item.line}: {str(exc).splitlines()[0]}") from None


def settings_for(where: Endpoint, cls: type[T]) -> T:
    """The provider plugin's settings (``cls``) from the instance's table, so the
    batch API is reached and its bodies built as that provider's chat calls are."""
    from llmkernel.options import parse_options

    return parse_options(cls, where.options, where=f"[providers.{where.name}]")


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")
