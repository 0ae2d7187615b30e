"""The cache's settings: the ``[plugin.cache]`` table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs

__all__ = [
    "CACHE_OPTION",
    "NAMESPACE_OPTION",
    "REQUEST_OPTIONS",
    "SEMANTIC_OPTION",
    "TTL_OPTION",
    "CacheSettings",
    "ModelCacheSettings",
    "ModelSemanticSettings",
    "SemanticSettings",
    "default_path",
]

# Request options the cache reads (claimed: never sent upstream)
CACHE_OPTION = "cache"  # options={"cache": False}: neither read nor write
TTL_OPTION = "cache_ttl"  # options={"cache_ttl": 60}: keep this answer 60 s
NAMESPACE_OPTION = "cache_namespace"  # options={"cache_namespace": "x"}: explicit namespace
# cache={"semantic": False}, or cache_semantic=False (a string in metadata): exact only
SEMANTIC_OPTION = "cache_semantic"
REQUEST_OPTIONS = frozenset({CACHE_OPTION, TTL_OPTION, NAMESPACE_OPTION, SEMANTIC_OPTION})


def default_path(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/llmkernel/cache.db``, else ``~/.cache/llmkernel/cache.db``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "llmkernel" / "cache.db")


#: every guard (llmkernel_cache.guards.GUARDS, named here so settings import nothing)
GUARDS = ("negation", "numbers", "entities", "order", "antonyms", "dates", "substitution")


@attrs.frozen(kw_only=True)
class SemanticSettings:
    """``[plugin.cache] semantic = {...}``: the semantic layer behind the exact cache.

    Off until ``enabled = true`` with an ``embedding_model`` (``"provider/model"``,
    called through the kernel's ``aembed``). A candidate is served when its cosine
    similarity reaches ``threshold`` (``same_words_threshold`` when both prompts have
    the same meaningful words) and every guard in ``guards`` lets it through; then,
    if ``verifier`` names a chat model (``"self"``: the model asked), that model must
    say the two prompts ask the same. The defaults are measured for
    multilingual-e5-small (docs/cache.md): recalibrate for another embedding model.
    """

    enabled: bool = False
    embedding_model: str = ""
    #: prepended to every text embedded ("query: " for an E5 model behind a generic server)
    input_prefix: str = ""
    threshold: float = 0.96
    same_words_threshold: float = 0.90
    guards: tuple[str, ...] = GUARDS
    #: candidates above the threshold tried in turn (best first) when guards reject
    candidates: int = 4
    #: user turns a conversation may have (earlier turns are in the partition)
    max_turns: int = 1
    #: tokens the last user message may have (the model's count, or an estimate)
    max_prompt_tokens: int = 256
    temperature_above_zero: bool = False
    verifier: str = ""

    def __attrs_post_init__(self) -> None:
        if self.enabled and not self.embedding_model:
            raise ValueError("semantic.embedding_model is required when semantic is enabled")
        if self.embedding_model and "/" not in self.embedding_model:
            raise ValueError(
                f"semantic.embedding_model must be 'provider/model', not {self.embedding_model!r}"
            )
        if self.verifier and self.verifier != "self" and "/" not in self.verifier:
            raise ValueError(
                f"semantic.verifier must be 'self' or 'provider/model', not {self.verifier!r}"
            )
        for value, key in (
            (self.threshold, "threshold"),
            (self.same_words_threshold, "same_words_threshold"),
        ):
            if not -1.0 <= value <= 1.0:
                raise ValueError(
                    f"semantic.{key} must be a cosine similarity in [-1, 1], not {value}"
                )
        for guard in self.guards:
            if guard not in GUARDS:
                raise ValueError(
                    f"semantic.guards: unknown guard {guard!r} (known: {', '.join(GUARDS)})"
                )
        for value, key in (
            (self.candidates, "candidates"),
            (self.max_turns, "max_turns"),
            (self.max_prompt_tokens, "max_prompt_tokens"),
        ):
            if value < 1:
                raise ValueError(f"semantic.{key} must be at least 1")


@attrs.frozen(kw_only=True)
class ModelSemanticSettings:
    """``semantic = {...}`` in ``[plugin.cache.models."<model>"]``: what differs for
    that model (the rest comes from ``[plugin.cache] semantic``)."""

    enabled: bool | None = None
    embedding_model: str | None = None
    input_prefix: str | None = None
    threshold: float | None = None
    same_words_threshold: float | None = None
    guards: tuple[str, ...] | None = None
    max_turns: int | None = None
    max_prompt_tokens: int | None = None
    temperature_above_zero: bool | None = None
    verifier: str | None = None


@attrs.frozen(kw_only=True)
class ModelCacheSettings:
    """``[plugin.cache.models."<model as requested>"]``: per model overrides."""

    enabled: bool | None = None
    ttl: float | None = None
    temperature_above_zero: bool | None = None
    semantic: ModelSemanticSettings | None = None


@attrs.frozen(kw_only=True)
class CacheSettings:
    """Every key is optional. Sizes are bytes of stored JSON; times are seconds.

    The cache is off until ``enabled = true``: answers are reused only when asked.

    ``ttl = 0`` keeps entries until evicted. ``path = ""`` keeps the cache in memory
    only (no SQLite). ``namespace = "tenant"`` gives each ``metadata["tenant"]`` its
    own entries; ``"shared"`` shares them across tenants.

    ``shared`` (default true): with ``[redis]`` in the config, exact entries are
    also kept in Redis (``[redis] cache_url`` when set), so an answer stored through
    one instance is a hit on every other; ``false`` keeps them on this machine.

    ``key_refresh`` (seconds) bounds how stale this process's view of the keys in
    SQLite may be: a lookup that misses memory skips SQLite when the key is
    certainly not there, and that certainty covers every answer another process
    stored at least ``key_refresh`` seconds before the lookup (older views make the
    lookup ask SQLite). ``0`` asks SQLite on every memory miss.
    """

    enabled: bool = False
    path: str | None = None
    ttl: float = 86400.0
    max_entries: int = 100_000
    max_bytes: int = 512 * 1024 * 1024
    memory_entries: int = 1_000
    memory_bytes: int = 32 * 1024 * 1024
    namespace: Literal["tenant", "shared"] = "tenant"
    temperature_above_zero: bool = False
    store_truncated: bool = False
    key_refresh: float = 1.0
    shared: bool = True
    semantic: SemanticSettings = attrs.field(factory=SemanticSettings)
    models: dict[str, ModelCacheSettings] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for value, key in (
            (self.ttl, "ttl"),
            (self.max_entries, "max_entries"),
            (self.max_bytes, "max_bytes"),
            (self.memory_entries, "memory_entries"),
            (self.memory_bytes, "memory_bytes"),
            (self.key_refresh, "key_refresh"),
        ):
            if value < 0:
                raise ValueError(f"{key} must not be negative")
        for model, override in self.models.items():
            if override.ttl is not None and override.ttl < 0:
                raise ValueError(f"models.{model}.ttl must not be negative")
            try:
                self.semantic_for(model)
            except ValueError as exc:
                raise ValueError(f"models.{model}.{exc}") from None

    def semantic_for(self, model: str) -> SemanticSettings:
        """The semantic settings for requests to ``model`` (its overrides applied)."""
        override = self.models.get(model)
        if override is None or override.semantic is None:
            return self.semantic
        changes = {
            f.name: getattr(override.semantic, f.name)
            for f in attrs.fields(ModelSemanticSettings)
            if getattr(override.semantic, f.name) is not None
        }
        return attrs.evolve(self.semantic, **changes) if changes else self.semantic

    @property
    def semantic_anywhere(self) -> bool:
        """Whether any model may use the semantic layer."""
        return self.semantic.enabled or any(
            m.semantic is not None and m.semantic.enabled for m in self.models.values()
        )

    @property
    def resolved_path(self) -> str:
        """The SQLite file, ``~`` expanded; ``""`` for memory only."""
        if self.path is None:
            return default_path()
        return os.path.expanduser(self.path) if self.path else ""
