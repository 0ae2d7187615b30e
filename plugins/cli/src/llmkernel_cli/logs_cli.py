"""``llmkernel logs``: list and search the conversation log; ``on``, ``off``,
``status``, ``path``."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", nargs="?", choices=("list", "on", "off", "status", "path"), default="list"
    )
    parser.add_argument(
        "-n", "--count", type=int, default=3, help="entries to show (default 3; 0: all)"
    )
    parser.add_argument("-m", "--model", help="only this model (as asked, or provider/model)")
    parser.add_argument("-q", "--query", help="full-text search of prompts and answers")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument(
        "--cid", "--conversation", metavar="ID", help="the entries of this conversation"
    )
    talk.add_argument(
        "-C", "--current", action="store_true", help="the entries of the last conversation"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace, kernel: Kernel, out: TextIO | None = None) -> int:
    from llmkernel_cli.logs import LogStore, logging_on, logs_path, off_marker
    from llmkernel_cli.paths import private_file
    from llmkernel_cli.shell import UsageError

    out = out or sys.stdout
    if args.action == "path":
        out.write(f"{logs_path()}\n")
        return 0
    if args.action == "off":
        private_file(off_marker())
        out.write("logging is off\n")
        return 0
    if args.action == "on":
        off_marker().unlink(missing_ok=True)
        out.write("logging is on\n")
        return 0
    if args.count < 0:
        raise UsageError("-n must be 0 (all) or more")
    store = LogStore()
    try:
        if args.action == "status":
            conversations, responses = store.counts()
            size = store.path.stat().st_size
            out.write(
                f"logging is {'on' if logging_on() else 'off'}\n"
                f"database: {store.path}\n"
                f"conversations: {conversations}\nresponses: {responses}\n"
                f"file size: {size / 1024:.1f} KiB\n"
            )
            return 0
        cid = args.cid or (store.last_conversation() if args.current else None)
        rows = store.entries(
            limit=0 if cid else args.count, model=args.model, query=args.query, cid=cid
        )
    finally:
        store.close()
    total = sum((r["cost"] for r in rows if r["cost"] is not None), Decimal(0))
    unpriced = sum(1 for r in rows if r["cost"] is None)
    if args.json:
        out.write(json.dumps([_plain(r) for r in rows], indent=2) + "\n")
        return 0
    for row in rows:
        _write_entry(row, out)
    note = f" ({unpriced} unpriced)" if unpriced else ""
    out.write(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, total ${total:f}{note}\n")
    return 0


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    from datetime import UTC, datetime

    data = dict(row)
    data["cost"] = None if row["cost"] is None else str(row["cost"])
    data["options"] = json.loads(data.pop("options_json") or "{}")
    data["attachments"] = json.loads(data.pop("attachments_json") or "[]")
    data["datetime_utc"] = datetime.fromtimestamp(row["ts"], UTC).isoformat(timespec="seconds")
    return data


def _write_entry(row: dict[str, Any], out: TextIO) -> None:
    from datetime import datetime

    when = datetime.fromtimestamp(row["ts"]).isoformat(sep=" ", timespec="seconds")
    cost = "unpriced" if row["cost"] is None else f"${row['cost']:f}"
    served = f"{row['provider']}/{row['resolved_model']}"
    model = row["model"] if row["model"] == served else f"{row['model']} -> {served}"
    out.write(
        f"## {when}  {model}  {cost}  "
        f"({row['input_tokens']} in, {row['output_tokens']} out, "
        f"{(row['latency'] or 0) * 1000:.0f} ms, {row['attempts']} attempt(s))\n"
        f"conversation {row['conversation_id']}, id {row['id']}\n\n"
    )
    if row["system"]:
        out.write(f"### System\n\n{row['system']}\n\n")
    out.write(f"### Prompt\n\n{row['prompt']}\n\n")
    if row["attachments_json"]:
        count = len(json.loads(row["attachments_json"]))
        out.write(f"({count} attachment(s))\n\n")
    out.write(f"### Response\n\n{row['response']}\n\n")
