"""``llmkernel stats``: the kernel's per-deployment statistics as a table.

Statistics live in the memory of the process that made the calls, so the command
can first send a batch itself (``--send N``, through the config's routing, retries
and fallbacks; a mock provider with ``failure_rate`` makes it a fault-injection run)
and then print what happened per deployment. ``--json`` prints ``kernel.stats()``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--send", type=int, default=0, metavar="N", help="send N requests first")
    parser.add_argument("-m", "--model", default=None, help="model or alias for --send")
    parser.add_argument("--prompt", default="Hello", help="the prompt for --send")
    parser.add_argument("--concurrency", type=int, default=8, help="parallel calls for --send")
    parser.add_argument("--stream", action="store_true", help="--send streams")
    parser.add_argument("--max-tokens", type=int, default=None, help="max_tokens for --send")
    parser.add_argument("--json", action="store_true", help="print kernel.stats() as JSON")
    parser.add_argument(
        "--url",
        default=None,
        help="a running gateway's address (http://host:port): show its statistics",
    )
    parser.add_argument(
        "--key-env",
        default="LLMKERNEL_GATEWAY_KEY",
        help="environment variable holding the gateway's admin key (for --url)",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="also print the per-minute timeline"
    )
    parser.add_argument(
        "--by",
        choices=["deployment", "variant"],
        default="deployment",
        help="variant: compare the variants of each experiment (from the ledger, or "
        "the gateway's with --url)",
    )


def run(args: argparse.Namespace, kernel: Any) -> int:
    out = sys.stdout
    if args.by == "variant":
        return _by_variant(args, kernel, out)
    if args.url:
        remote = gateway_stats(args.url, os.environ.get(args.key_env, ""))
        if args.json:
            out.write(json.dumps(remote, indent=2, default=str) + "\n")
        else:
            write_table(remote, out, timeline=False)
        return 0
    summary = send(kernel, args) if args.send > 0 else None
    stats: Mapping[str, Any] = kernel.stats() if hasattr(kernel, "stats") else _own_stats(kernel)
    if args.json:
        if summary is not None:
            stats = {**stats, "sent": summary}
        out.write(json.dumps(stats, indent=2, default=str) + "\n")
        return 0
    if summary is not None:
        out.write(
            f"sent {summary['sent']}: {summary['ok']} ok, {summary['failed']} failed"
            + (
                " (" + ", ".join(f"{k} {v}" for k, v in sorted(summary["errors"].items())) + ")"
                if summary["errors"]
                else ""
            )
            + "\n\n"
        )
    write_table(stats, out, timeline=args.timeline)
    return 0


def _by_variant(args: argparse.Namespace, kernel: Any, out: TextIO) -> int:
    """``--by variant``: the ledger's comparison (llmkernel-ledger), or a gateway's."""
    from llmkernel.errors import ConfigError

    try:
        from llmkernel_ledger.cli import run_variants, write_variants
        from llmkernel_ledger.plugin import ledger_for
    except ImportError:
        raise ConfigError(
            "stats --by variant reads the ledger: pip install llmkernel-ledger"
        ) from None
    if args.url:
        found = _status(args.url, os.environ.get(args.key_env, "")).get("experiments") or {}
        write_variants(found, out, as_json=args.json)
        return 0
    return run_variants(args, ledger_for(kernel), out)


def send(kernel: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Send ``args.send`` requests, ``args.concurrency`` at a time; count outcomes."""
    options: dict[str, Any] = {}
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens

    def one(_: int) -> str:
        try:
            if args.stream:
                kernel.stream(model=args.model, messages=args.prompt, **options).collect()
            else:
                kernel.chat(model=args.model, messages=args.prompt, **options)
        except Exception as exc:
            return type(exc).__name__
        return ""

    errors: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        for name in pool.map(one, range(args.send)):
            if name:
                errors[name] = errors.get(name, 0) + 1
    failed = sum(errors.values())
    return {"sent": args.send, "ok": args.send - failed, "failed": failed, "errors": errors}


_COLUMNS = (
    ("DEPLOYMENT", "deployment"),
    ("REQ", "requests"),
    ("OK", "successes"),
    ("ERR", "errors"),
    ("REFUSED", "refused"),
    ("INFL", "in_flight"),
    ("P50 MS", "p50"),
    ("P95 MS", "p95"),
    ("P99 MS", "p99"),
    ("TTFT P50", "ttft50"),
    ("TOKENS", "tokens"),
    ("COST", "cost"),
    ("BREAKER", "breaker"),
)


def gateway_stats(url: str, key: str) -> dict[str, Any]:
    """A running gateway's per-deployment statistics (its ``/status.json``, behind
    an admin key), in ``kernel.stats()``'s shape."""
    deployments = _status(url, key).get("deployments", {})
    return {"deployments": {name: _from_status(row) for name, row in deployments.items()}}


def _status(url: str, key: str) -> dict[str, Any]:
    """A running gateway's ``/status.json`` (behind an admin key)."""
    import httpx

    from llmkernel.errors import ConfigError

    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/status.json", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach the gateway at {url}: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise ConfigError(
            f"the gateway at {url} refused the key (status {response.status_code}): put an "
            "admin key in $LLMKERNEL_GATEWAY_KEY or name the variable with --key-env"
        )
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


def _from_status(row: Mapping[str, Any]) -> dict[str, Any]:
    """A status page row (the whole server's numbers) in the shape of ``kernel.stats()``."""
    requests, errors = int(row.get("requests") or 0), int(row.get("errors") or 0)
    state = row.get("breaker")
    return {
        "requests": requests,
        "successes": requests - errors,
        "errors": errors,
        "latency_ms": {"p50": row.get("latency_p50_ms"), "p95": row.get("latency_p95_ms")},
        "ttft_ms": {"p50": row.get("ttft_p50_ms"), "p95": row.get("ttft_p95_ms")},
        "cost": row.get("cost_today"),
        "breaker": {"state": state} if state else {},
    }


def rows(stats: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row of strings per deployment."""
    out = []
    for key, d in sorted(stats.get("deployments", {}).items()):
        latency, ttft = d.get("latency_ms") or {}, d.get("ttft_ms") or {}
        breaker = d.get("breaker") or {}
        state = str(breaker.get("state", "-"))
        if state != "closed" and breaker.get("retry_after") is not None:
            state += f" {breaker['retry_after']:.0f}s"
        out.append(
            {
                "deployment": key,
                "requests": str(d.get("requests", 0)),
                "successes": str(d.get("successes", 0)),
                "errors": str(d.get("errors", 0)),
                "refused": str(d.get("refused", 0)),
                "in_flight": str(d.get("in_flight", 0)),
                "p50": _num(latency.get("p50")),
                "p95": _num(latency.get("p95")),
                "p99": _num(latency.get("p99")),
                "ttft50": _num(ttft.get("p50")),
                "tokens": str(d.get("input_tokens", 0) + d.get("output_tokens", 0)),
                "cost": _cost(d.get("cost"), d.get("unpriced", 0)),
                "breaker": state,
            }
        )
    return out


def write_table(stats: Mapping[str, Any], out: TextIO, *, timeline: bool = False) -> None:
    table = rows(stats)
    if not table:
        out.write("no requests yet in this process (try --send N)\n")
        return
    widths = {field: max(len(title), *(len(r[field]) for r in table)) for title, field in _COLUMNS}
    out.write("  ".join(f"{t:<{widths[f]}}" for t, f in _COLUMNS).rstrip() + "\n")
    for row in table:
        out.write("  ".join(f"{row[f]:<{widths[f]}}" for _, f in _COLUMNS).rstrip() + "\n")
    details = []
    for key, d in sorted(stats.get("deployments", {}).items()):
        kinds = {**d.get("errors_by_kind", {})}
        refused = d.get("refused_by_kind", {})
        parts = [f"{k} {v}" for k, v in sorted(kinds.items())]
        parts += [f"refused:{k} {v}" for k, v in sorted(refused.items())]
        last = d.get("last_error")
        if parts or last:
            line = f"  {key}: " + ", ".join(parts)
            if last:
                line += f"; last error: {last.get('kind')}: {last.get('message')}"
            reason = (d.get("breaker") or {}).get("reason")
            if reason:
                line += f"; breaker: {reason}"
            details.append(line)
    if details:
        out.write("\nerrors\n" + "\n".join(details) + "\n")
    calls = (stats.get("routing") or {}).get("calls")
    if calls:
        statuses = ", ".join(f"{k} {v}" for k, v in calls.get("by_status", {}).items())
        out.write(
            f"\ncalls {calls.get('calls', 0)} ({statuses}); attempts {calls.get('attempts', 0)}, "
            f"fallbacks {calls.get('fallbacks', 0)}, cached {calls.get('cached', 0)}\n"
        )
    if timeline:
        import time

        out.write("\nMINUTE    REQ   OK    ERR   TOKENS   COST\n")
        for m in (stats.get("routing") or {}).get("timeline", []):
            at = time.strftime("%H:%M", time.localtime(m["minute"]))
            out.write(
                f"{at:<8}  {m['requests']:<5} {m['successes']:<5} {m['errors']:<5} "
                f"{m['input_tokens'] + m['output_tokens']:<8} {m['cost']}\n"
            )


def _own_stats(kernel: Any) -> Mapping[str, Any]:
    from llmkernel_routing.state import routing_for

    return routing_for(kernel).snapshot()


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cost(value: Any, unpriced: int) -> str:
    text = "-" if value is None else f"${float(value):.6f}"
    return text + (f" (+{unpriced} unpriced)" if unpriced else "")


__all__ = ["add_arguments", "rows", "run", "send", "write_table"]
