"""``llmkernel gateway-keys create|list|show|update|rotate|revoke|hash``.

Each action works on the key store itself (the SQLite file in the gateway's data
directory, or Redis when ``[redis]`` is set: what :func:`~llmkernel_gateway.keystore.
open_store` opens for the same config), through :mod:`llmkernel_gateway.keyops` as the
admin API does, so input is checked and audited alike (actor ``cli:<user>``); or,
with ``--url URL``, on a running gateway through its admin API, with the admin key
read from an environment variable (``LLMKERNEL_ADMIN_KEY``), never from argv.

A secret is printed once, by ``create`` and ``rotate``; ``list`` and ``show`` print
neither secrets nor hashes. Here: the options and how they become the admin API's
fields; :mod:`~llmkernel_gateway.keys_backends` runs an action,
:mod:`~llmkernel_gateway.keys_render` prints its answer. Cheap to import: the store,
httpx and the ledger load when an action runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TextIO

from llmkernel_gateway.keys_backends import ApiError, Backend, Local, Remote, flagged
from llmkernel_gateway.keys_render import render_list, render_show, when

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

__all__ = ["ADMIN_KEY_ENV", "keys", "keys_arguments"]

#: where ``--url`` reads the admin key from (``--admin-key-env`` names another)
ADMIN_KEY_ENV = "LLMKERNEL_ADMIN_KEY"
EXIT_FAILED = 1
EXIT_USAGE = 2
_SPAN = re.compile(r"^\+(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CLEAR = ("none", "never")
_PERIODS = ("day", "month", "total")
#: create's options a config-file table (--print-toml) is not made with
_TABLE_ONLY = ("expires", "budget_day", "budget_month", "budget_total", "rpm", "tpm", "metadata")
_RATES = (("rpm", "requests_per_minute"), ("tpm", "tokens_per_minute"))


# ---------------------------------------------------------------------- arguments


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="act on a running gateway's admin API (http://host:port) instead of the key store",
    )
    parser.add_argument(
        "--admin-key-env",
        default=ADMIN_KEY_ENV,
        metavar="VAR",
        help=f"with --url: the environment variable holding an admin key (default: "
        f"{ADMIN_KEY_ENV}); never given on the command line",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def _settings_arguments(parser: argparse.ArgumentParser, *, update: bool) -> None:
    clear = "; 'none' removes it" if update else ""
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="PATTERN",
        help="a model or alias it may use ('openai/*' works); repeat"
        + ("; replaces the list" if update else "; default: all"),
    )
    parser.add_argument(
        "--tenant",
        help="tenant for cache, ledger and budgets (default: the name)"
        + ("; 'none': back to the name" if update else ""),
    )
    parser.add_argument(
        "--expires",
        metavar="WHEN",
        help="an ISO 8601 time (2027-01-31T00:00:00Z) or a span from now (+30d, +12h, +90m)"
        + ("; 'never' removes it" if update else ""),
    )
    for period, per in zip(_PERIODS, ("a day", "a calendar month", "in total"), strict=True):
        parser.add_argument(
            f"--budget-{period}", metavar="USD", help=f"spend allowed {per} (USD){clear}"
        )
    parser.add_argument("--rpm", metavar="N", help=f"requests per minute{clear}")
    parser.add_argument("--tpm", metavar="N", help=f"tokens per minute{clear}")
    parser.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata every request of the key carries; repeat"
        + ("; KEY= removes one" if update else ""),
    )


def keys_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = sub.add_parser(
        "create", help="make a key in the key store; its secret is printed once"
    )
    create.add_argument("name", help="the key's name (shown in logs, metrics and ledgers)")
    _settings_arguments(create, update=False)
    create.add_argument(
        "--admin",
        action="store_true",
        help="an admin key: the admin API, /metrics, the status page",
    )
    create.add_argument(
        "--print-toml",
        action="store_true",
        help="store nothing: print the key and a [plugin.gateway.keys] table for the config file",
    )
    _common(create)

    listing = sub.add_parser("list", help="every key: the config file's and the store's")
    _common(listing)

    show = sub.add_parser("show", help="one key's settings, spend and last use")
    show.add_argument("name")
    _common(show)

    update = sub.add_parser("update", help="change a store key's settings")
    update.add_argument("name")
    _settings_arguments(update, update=True)
    update.add_argument("--all-models", action="store_true", help="may use every model")
    state = update.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true", help="refuse the key until --enable")
    state.add_argument("--enable", action="store_true", help="accept a disabled key again")
    admin = update.add_mutually_exclusive_group()
    admin.add_argument("--admin", action="store_true", default=None, help="make it an admin key")
    admin.add_argument("--no-admin", action="store_false", dest="admin", help="an ordinary key")
    _common(update)

    rotate = sub.add_parser("rotate", help="a new secret (printed once); the old one lasts --grace")
    rotate.add_argument("name")
    rotate.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        help="how long the old secret keeps working (default 3600; 0: refused at once)",
    )
    _common(rotate)

    revoke = sub.add_parser("revoke", help="remove a store key: refused with 401 at once")
    revoke.add_argument("name")
    _common(revoke)

    sub.add_parser("hash", help="print the stored hash of a key read from stdin")


# ---------------------------------------------------------------------- the command


def keys(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_gateway.keyops import ReadOnly
    from llmkernel_gateway.keystore import Conflict, Missing
    from llmkernel_gateway.records import BadInput

    out = sys.stdout
    action = args.keys_command
    if action == "hash":
        return _hash(out)
    try:
        if action == "create" and args.print_toml:
            return _print_toml(args, kernel, out)
        return asyncio.run(_run(args, kernel, out))
    except BadInput as exc:
        return _fail(flagged(exc.message, exc.param), EXIT_USAGE)
    except (Missing, Conflict, ReadOnly) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ApiError as exc:
        usage = exc.status is not None and 400 <= exc.status < 500
        return _fail(str(exc), EXIT_USAGE if usage else EXIT_FAILED)
    except Exception as exc:  # the store cannot be read or written (Redis away, a bad file)
        if not _store_failure(exc):
            raise
        return _fail(f"the key store cannot be used: {exc}", EXIT_FAILED)


def _store_failure(exc: Exception) -> bool:
    """Redis unavailable (``llmkernel-redis``) or an SQLite error of the store."""
    import sqlite3

    try:
        from llmkernel_redis.link import Unavailable
    except ImportError:
        return isinstance(exc, sqlite3.Error | OSError)
    return isinstance(exc, Unavailable | sqlite3.Error | OSError)


def _fail(message: str, code: int) -> int:
    print(f"llmkernel: error: {message}", file=sys.stderr)
    return code


async def _run(args: argparse.Namespace, kernel: Kernel, out: TextIO) -> int:
    backend: Backend = (
        Remote(args.url, _admin_key(args.admin_key_env)) if args.url else Local(kernel)
    )
    try:
        return await _act(args, backend, out)
    finally:
        await backend.aclose()


async def _act(args: argparse.Namespace, backend: Backend, out: TextIO) -> int:
    action = args.keys_command
    if action == "list":
        rows = await backend.list()
        out.write(_json(rows) if args.json else render_list(rows))
        return 0
    if action == "show":
        row = await backend.show(args.name)
        out.write(_json(row) if args.json else render_show(row))
        return 0
    if action == "create":
        body = {"name": args.name, **_settings_body(args, {})}
        if args.admin:
            body["admin"] = True
        row = await backend.create(body)
        _secret_answer(out, args, row, f"key {args.name!r} is in {backend.where}")
        return 0
    if action == "update":
        row = await backend.update(args.name, await _update_body(args, backend))
        if args.json:
            out.write(_json(row))
        else:
            out.write(f"updated {args.name!r} in {backend.where}\n\n" + render_show(row))
        return 0
    if action == "rotate":
        row = await backend.rotate(args.name, args.grace)
        until = row.get("previous_secret_valid_until")
        note = (
            f"the previous secret works until {when(until)}"
            if until
            else "the previous secret is refused from now on"
        )
        _secret_answer(out, args, row, f"key {args.name!r} has a new secret; {note}")
        return 0
    assert action == "revoke"
    answer = await backend.revoke(args.name)
    if args.json:
        out.write(_json(answer))
    else:
        out.write(
            f"revoked {args.name!r} in {backend.where}: every gateway worker refuses it "
            "within control_refresh seconds (1 s by default)\n"
        )
    return 0


def _secret_answer(
    out: TextIO, args: argparse.Namespace, row: Mapping[str, Any], note: str
) -> None:
    if args.json:
        out.write(_json(row))
        return
    out.write(
        f"key: {row['key']}\n\nShown once: store it now. {note[0].upper()}{note[1:]}; "
        "running gateways take it in within control_refresh seconds (1 s by default).\n"
    )


def _json(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


# ---------------------------------------------------------------------- input


def _number(text: str) -> Any:
    """``text`` as a number when it is one (the key store's checks say the rest)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    if not value.is_finite():
        return text
    return int(value) if value == value.to_integral_value() else float(value)


def _cleared(text: str) -> bool:
    return text.strip().lower() in _CLEAR


def _expiry(text: str, *, update: bool) -> dict[str, Any]:
    from llmkernel_gateway.records import BadInput

    if update and _cleared(text):
        return {"expires_at": None}
    span = _SPAN.match(text.strip())
    if span:
        return {"expires_in": float(span.group(1)) * _UNITS[span.group(2)]}
    if text.startswith("+"):
        raise BadInput(f"{text!r} is not a span: +N followed by s, m, h, d or w", "expires_in")
    return {"expires_at": text}


def _metadata(items: Sequence[str], current: Mapping[str, str]) -> dict[str, str] | None:
    from llmkernel_gateway.records import BadInput

    if not items:
        return None
    merged = dict(current)
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BadInput(f"{item!r} must be KEY=VALUE", "metadata")
        if value:
            merged[name] = value
        else:
            merged.pop(name, None)
    return merged


def _settings_body(args: argparse.Namespace, current: Mapping[str, Any]) -> dict[str, Any]:
    """The admin API's fields from the options (``current``: the key's settings,
    which budgets, rate limits and metadata are merged into on ``update``)."""
    update = args.keys_command == "update"
    body: dict[str, Any] = {}
    if args.models:
        body["models"] = list(args.models)
    if update and args.all_models:
        body["models"] = []
    if args.tenant is not None:
        body["tenant"] = None if update and _cleared(args.tenant) else args.tenant
    if args.expires is not None:
        body.update(_expiry(args.expires, update=update))
    budget = dict(current.get("budget") or {})
    given = False
    for period in _PERIODS:
        value = getattr(args, f"budget_{period}")
        if value is not None:
            given = True
            budget[period] = None if update and _cleared(value) else value
    if given:  # the API replaces the whole budget: 'none' periods are left out
        body["budget"] = budget
    rates = dict(current.get("rate_limit") or {})
    given = False
    for flag, name in _RATES:
        value = getattr(args, flag)
        if value is not None:
            given = True
            rates[name] = None if update and _cleared(value) else _number(value)
    if given:
        kept = {k: v for k, v in rates.items() if v is not None and k != "window"}
        body["rate_limit"] = rates if kept else {}
    metadata = _metadata(args.metadata, current.get("metadata") or {})
    if metadata is not None:
        body["metadata"] = metadata
    return body


async def _update_body(args: argparse.Namespace, backend: Backend) -> dict[str, Any]:
    from llmkernel_gateway.records import BadInput

    merging = args.metadata or any(
        getattr(args, name) is not None
        for name in ("rpm", "tpm", *(f"budget_{p}" for p in _PERIODS))
    )
    current = await backend.show(args.name) if merging else {}
    body = _settings_body(args, current)
    if args.disable or args.enable:
        body["disabled"] = bool(args.disable)
    if args.admin is not None:
        body["admin"] = args.admin
    if not body:
        raise BadInput(
            "nothing to change: give --model, --tenant, --expires, --budget-*, --rpm, "
            "--tpm, --metadata, --disable/--enable or --admin/--no-admin"
        )
    return body


def _admin_key(variable: str) -> str:
    from llmkernel_gateway.records import BadInput

    key = os.environ.get(variable, "").strip()
    if not key:
        raise BadInput(
            f"--url needs an admin key in the environment variable {variable} (never on "
            "the command line): export it, or name another with --admin-key-env"
        )
    return key


# ---------------------------------------------------------------------- config-file keys


def _hash(out: TextIO) -> int:
    from llmkernel_gateway.keys import stored_hash

    text = sys.stdin.readline().strip()
    if not text:
        return _fail("no key on stdin", EXIT_USAGE)
    out.write(stored_hash(text) + "\n")
    return 0


def _print_toml(args: argparse.Namespace, kernel: Kernel, out: TextIO) -> int:
    """The old ``create``: a key for the config file (nothing stored)."""
    from llmkernel_gateway.keys import new_key, stored_hash
    from llmkernel_gateway.records import BadInput

    extra = [f"--{n.replace('_', '-')}" for n in _TABLE_ONLY if getattr(args, n) not in (None, [])]
    if extra or args.url:
        raise BadInput(
            f"--print-toml makes a key for the config file and takes --model, --tenant and "
            f"--admin only, not {', '.join(extra or ['--url'])}: set budget, rate_limit "
            "and metadata in its table"
        )

    key = new_key()
    digest = stored_hash(key)
    table = _toml_table(args.name, digest, args.models or [], args.tenant, args.admin)
    if args.json:
        out.write(json.dumps({"name": args.name, "key": key, "hash": digest}) + "\n")
    else:
        out.write(
            f"key: {key}\n\nShown once: store it now. Add this to your config "
            f"({kernel.config.source}):\n\n{table}"
        )
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
