"""The OpenTelemetry GenAI semantic conventions this package emits, and which version.

Sources (read 2026-12-07):

- **v1.41.0** (the default): the last release of the GenAI conventions in
  open-telemetry/semantic-conventions (tag ``v1.41.0``, 2026-04-28;
  ``docs/gen-ai/gen-ai-spans.md``, ``gen-ai-metrics.md``,
  ``docs/registry/attributes/gen-ai.md``). The conventions then moved to
  open-telemetry/semantic-conventions-genai.
- **latest experimental**, with ``OTEL_SEMCONV_STABILITY_OPT_IN`` listing
  ``gen_ai_latest_experimental``: that repository's development version
  (``docs/gen-ai/non-normative/migration.md``, ``gen-ai-token-metrics.md``,
  ``client-embeddings.md``): ``gen_ai.usage.cache_write.input_tokens`` instead of
  ``cache_creation``; duration metrics per operation
  (``gen_ai.client.inference.duration``, ``gen_ai.client.embeddings.duration``);
  token counters per category instead of ``gen_ai.client.token.usage``.

Both share the span names, span kinds and the other attributes.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import attrs

__all__ = [
    "DURATION_BUCKETS",
    "LATEST",
    "OTHER",
    "TOKEN_BUCKETS",
    "V1_41",
    "Conventions",
    "capture_content_from_env",
    "conventions_from_env",
    "package_version",
    "provider_name",
]

#: ``ExplicitBucketBoundaries`` of the duration and time-to-first-chunk histograms.
DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
#: ``ExplicitBucketBoundaries`` of the token histograms.
TOKEN_BUCKETS = tuple(4**n for n in range(14))  # 1, 4, 16, ... 67108864

#: The value of a metric attribute the configuration does not define (a model name
#: a client made up), as HTTP's conventions bound ``http.request.method``.
OTHER = "_OTHER"

OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
LATEST_OPT_IN = "gen_ai_latest_experimental"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@attrs.frozen(kw_only=True)
class Conventions:
    """The names that differ between the two versions."""

    version: str
    schema_url: str
    cache_write_attribute: str
    #: metric names per operation (``chat``, ``embeddings``)
    duration: dict[str, str]
    time_to_first_chunk: str
    #: v1.41.0: one histogram with ``gen_ai.token.type``; latest: ``None``
    token_usage: str | None
    #: latest: counters per token category, and per-operation histograms
    token_counters: dict[str, str] = attrs.field(factory=dict)
    token_histograms: dict[tuple[str, str], str] = attrs.field(factory=dict)


V1_41 = Conventions(
    version="1.41.0",
    schema_url="https://opentelemetry.io/schemas/1.41.0",
    cache_write_attribute="gen_ai.usage.cache_creation.input_tokens",
    duration={
        "chat": "gen_ai.client.operation.duration",
        "embeddings": "gen_ai.client.operation.duration",
    },
    time_to_first_chunk="gen_ai.client.operation.time_to_first_chunk",
    token_usage="gen_ai.client.token.usage",
)

LATEST = Conventions(
    version="latest-experimental",
    schema_url="",
    cache_write_attribute="gen_ai.usage.cache_write.input_tokens",
    duration={
        "chat": "gen_ai.client.inference.duration",
        "embeddings": "gen_ai.client.embeddings.duration",
    },
    time_to_first_chunk="gen_ai.client.inference.time_to_first_chunk",
    token_usage=None,
    token_counters={
        "input": "gen_ai.client.inference.usage.input_tokens",
        "output": "gen_ai.client.inference.usage.output_tokens",
        "cache_read": "gen_ai.client.inference.usage.cache_read.input_tokens",
        "cache_write": "gen_ai.client.inference.usage.cache_write.input_tokens",
        "reasoning": "gen_ai.client.inference.usage.reasoning.output_tokens",
    },
    token_histograms={
        ("chat", "input"): "gen_ai.client.inference.operation.input_tokens",
        ("chat", "output"): "gen_ai.client.inference.operation.output_tokens",
        ("embeddings", "input"): "gen_ai.client.embeddings.operation.input_tokens",
    },
)


def conventions_from_env(environ: os._Environ[str] | dict[str, str] | None = None) -> Conventions:
    """``LATEST`` when ``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma-separated list)
    names ``gen_ai_latest_experimental``, else ``V1_41``."""
    env = os.environ if environ is None else environ
    listed = {part.strip() for part in env.get(OPT_IN_ENV, "").split(",")}
    return LATEST if LATEST_OPT_IN in listed else V1_41


def capture_content_from_env(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    """Whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for content
    on spans: ``true`` (the older convention), ``span_only`` or ``span_and_event``
    (the newer, case-insensitive). ``event_only``, ``no_content``, ``false`` or
    unset: no content (this package emits no events)."""
    env = os.environ if environ is None else environ
    value = env.get(CAPTURE_ENV, "").strip().lower()
    return value in ("true", "1", "span_only", "span_and_event")


# The convention's well-known gen_ai.provider.name values, by llmkernel provider type
_BY_TYPE = {
    "openai": "openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "gemini": "gcp.gemini",
}
# OpenAI-compatible services with a well-known value of their own, by API host
_BY_HOST = {
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "api.cohere.com": "cohere",
    "api.moonshot.ai": "moonshot_ai",
    "aiplatform.googleapis.com": "gcp.vertex_ai",
}


def provider_name(provider_type: str, base_url: str | None = None) -> str:
    """``gen_ai.provider.name`` for a provider instance: the convention's value for
    its type (``openai``, ``anthropic``, ``aws.bedrock``, ``azure.ai.openai``,
    ``gcp.gemini``), the service's own for an OpenAI-compatible host that has one
    (``groq``, ``deepseek``, ``mistral_ai``, ...), else the type itself
    (``ollama``, ``mock``)."""
    if base_url:
        host = urlsplit(base_url).hostname or ""
        for suffix, name in _BY_HOST.items():
            if host == suffix or host.endswith("." + suffix):
                return name
    return _BY_TYPE.get(provider_type, provider_type or OTHER)


def package_version() -> str:
    """This package's version (the instrumentation scope's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmkernel-otel")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        return "0"
