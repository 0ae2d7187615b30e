"""llmkernel hooks for the response cache. Cheap to import: the cache itself (and
sqlite-utils) load when a kernel is configured with it."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    import argparse

    from llmkernel.cli_registry import CommandRegistry
    from llmkernel.config import Config
    from llmkernel.kernel import Kernel
    from llmkernel_cache.cache import ResponseCache

__all__ = ["cache_of"]

NAME = "cache"
_caches: weakref.WeakKeyDictionary[Any, ResponseCache | None] = weakref.WeakKeyDictionary()


def cache_of(kernel: Kernel) -> ResponseCache | None:
    """This plugin's cache in ``kernel``, or ``None`` when disabled."""
    return _caches.get(kernel)


@hookimpl
def configure(kernel: Kernel, config: Config) -> None:
    from llmkernel.options import parse_options
    from llmkernel_cache.settings import REQUEST_OPTIONS, CacheSettings

    settings = parse_options(
        CacheSettings, config.plugin_settings(NAME), where=config.where(f"plugin.{NAME}")
    )
    cache = None
    if settings.enabled:  # the cache itself (and its key, sqlite) loads only then
        from llmkernel_cache.cache import ResponseCache

        if settings.semantic_anywhere:
            from llmkernel_cache.calls import kernel_calls

            cache = ResponseCache(settings, **kernel_calls(kernel))
        else:
            cache = ResponseCache(settings)
        if config.redis and settings.shared:  # the fleet's entries (llmkernel-redis)
            from llmkernel_cache.remote import remote_for

            cache.remote = remote_for(kernel)
        # a script that never closes its kernel keeps what it stored
        kernel.lifecycle.on_exit(cache.write_at_exit)
    _caches[kernel] = cache  # Kernel.aclose awaits the cache's aclose
    # cache=False, cache_ttl=..., cache_namespace=... are ours: never sent upstream
    kernel.models.claim_options(*REQUEST_OPTIONS)


@hookimpl
def provide_cache(kernel: Kernel) -> ResponseCache | None:
    return _caches.get(kernel)


@hookimpl
def collect_stats(kernel: Kernel) -> Mapping[str, Any] | None:
    cache = _caches.get(kernel)
    return {"cache": cache.stats()} if cache is not None else None


@hookimpl
def register_commands(registry: CommandRegistry) -> None:
    registry.add(
        "cache",
        help="response cache: stats, or clear (all or one namespace)",
        arguments=_arguments,
        run=_run,
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["stats", "clear"])
    parser.add_argument("--namespace", help="only this namespace (a tenant, or 'default')")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _run(args: argparse.Namespace, kernel: Kernel) -> int:
    import json
    import sys

    cache = _caches.get(kernel)
    if cache is None or kernel.cache is not cache:
        print("llmkernel: error: the response cache is disabled", file=sys.stderr)
        return 1
    if args.action == "clear":
        removed = cache.clear(args.namespace)
        where = f"namespace {args.namespace!r}" if args.namespace else "every namespace"
        if args.json:
            print(json.dumps({"removed": removed, "namespace": args.namespace}))
        else:
            print(f"removed {removed} entries from {where}")
        return 0
    namespaces = cache.namespaces()
    if args.namespace:
        namespaces = {k: v for k, v in namespaces.items() if k == args.namespace}
    rows = {ns: {"entries": t.entries, "bytes": t.bytes} for ns, t in namespaces.items()}
    counts = cache.counts()
    lookups = _lookups(counts)
    if args.json:
        print(
            json.dumps(
                {"path": cache.settings.resolved_path, "namespaces": rows, "lookups": lookups}
            )
        )
        return 0
    print(f"cache: {cache.settings.resolved_path or '(memory only)'}")
    if not rows:
        print("no entries")
    for ns, row in rows.items():
        print(f"{ns}: {row['entries']} entries, {row['bytes']} bytes")
    total_entries = sum(r["entries"] for r in rows.values())
    total_bytes = sum(r["bytes"] for r in rows.values())
    if len(rows) > 1:
        print(f"total: {total_entries} entries, {total_bytes} bytes")
    exact = lookups["exact"]
    print(
        f"exact: {exact['hits']} hits ({exact['memory_hits']} from memory), "
        f"{exact['misses']} misses, hit rate {exact['hit_rate']:.1%}, "
        f"{exact['bypassed']} bypassed"
    )
    semantic = lookups.get("semantic")
    if semantic is not None:
        print(
            f"semantic: {semantic['hits']} hits, {semantic['misses']} misses, "
            f"{semantic['rejected']} rejected, {semantic['embeddings']} embeddings"
        )
        if semantic["rejected_by"]:
            by = ", ".join(f"{k} {v}" for k, v in semantic["rejected_by"].items())
            print(f"  rejected by: {by}")
        if semantic["skipped"]:
            by = ", ".join(f"{k} {v}" for k, v in semantic["skipped"].items())
            print(f"  not semantic: {by}")
    return 0


def _lookups(counts: Mapping[str, int]) -> dict[str, Any]:
    """Every process's counts (kept in the cache file) as the CLI shows them."""
    hits, misses = counts.get("hits", 0), counts.get("misses", 0)
    out: dict[str, Any] = {
        "exact": {
            "hits": hits,
            "memory_hits": counts.get("memory_hits", 0),
            "misses": misses,
            "bypassed": counts.get("bypassed", 0),
            "stores": counts.get("stores", 0),
            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
        }
    }
    semantic = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("semantic.")}
    if semantic:
        from collections import Counter

        from llmkernel_cache.semantic import stats_of

        section = stats_of(Counter(semantic), 0)
        section.pop("entries")
        out["semantic"] = section
    return out
