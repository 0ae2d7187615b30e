"""The CLI commands this package adds: ``llmkernel serve`` and
``llmkernel gateway-keys create|hash|list``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: [plugin.gateway] host)")
    parser.add_argument("--port", type=int, help="port (default: [plugin.gateway] port, 4000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: 1)")


def serve(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_gateway.server import serve as run

    # The CLI's kernel only carried the config: each worker builds its own kernel
    # on its own event loop.
    return run(kernel.config, host=args.host, port=args.port, workers=args.workers)


def keys_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="make a new key; it is printed once")
    create.add_argument("name", help="the key's name (shown in logs, metrics and ledgers)")
    create.add_argument(
        "--model",
        action="append",
        default=[],
        dest="models",
        metavar="PATTERN",
        help="a model or alias it may use ('openai/*' works); repeat; default: all",
    )
    create.add_argument("--tenant", help="tenant for cache, ledger and budgets (default: name)")
    create.add_argument("--admin", action="store_true", help="may see /metrics and the status page")
    create.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("hash", help="print the stored hash of a key read from stdin")
    listing = sub.add_parser("list", help="the configured keys (names, never secrets)")
    listing.add_argument("--json", action="store_true")


def keys(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_gateway.keys import new_key, stored_hash
    from llmkernel_gateway.settings import load_settings

    out = sys.stdout
    if args.keys_command == "create":
        key = new_key()
        digest = stored_hash(key)
        table = _toml_table(args.name, digest, args.models, args.tenant, args.admin)
        if args.json:
            out.write(json.dumps({"name": args.name, "key": key, "hash": digest}) + "\n")
        else:
            out.write(
                f"key: {key}\n\nShown once: store it now. Add this to your config "
                f"({kernel.config.source}):\n\n{table}"
            )
        return 0
    if args.keys_command == "hash":
        text = sys.stdin.readline().strip()
        if not text:
            print("llmkernel: error: no key on stdin", file=sys.stderr)
            return 2
        out.write(stored_hash(text) + "\n")
        return 0
    settings = load_settings(kernel.config)
    rows: list[dict[str, Any]] = [
        {"name": k.name, "tenant": k.tenant, "models": list(k.models), "admin": k.admin}
        for k in settings.key_list()
    ]
    if getattr(args, "json", False):
        out.write(json.dumps(rows, indent=2) + "\n")
    elif not rows:
        out.write("no keys configured: the gateway listens on loopback only\n")
    else:
        for row in rows:
            models = ", ".join(row["models"]) or "all models"
            admin = " (admin)" if row["admin"] else ""
            out.write(f"{row['name']}{admin}: tenant {row['tenant']}; {models}\n")
    return 0


def _toml_table(name: str, digest: str, models: list[str], tenant: str | None, admin: bool) -> str:
    quoted = json.dumps(name) if not name.replace("-", "").replace("_", "").isalnum() else name
    lines = [f"[plugin.gateway.keys.{quoted}]", f'hash = "{digest}"']
    if models:
        lines.append("models = [" + ", ".join(json.dumps(m) for m in models) + "]")
    if tenant:
        lines.append(f"tenant = {json.dumps(tenant)}")
    if admin:
        lines.append("admin = true")
    return "\n".join(lines) + "\n"


__all__ = ["keys", "keys_arguments", "serve", "serve_arguments"]
