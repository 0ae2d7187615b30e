"""The gateway's three APIs side by side, in one run, on one ``llmkernel serve`` (one
worker) over the same fake OpenAI upstream:

- ``chat``: ``POST /v1/chat/completions``;
- ``responses``: ``POST /v1/responses`` (``store: true``, OpenAI's default: each
  answer is written to the response store before it is sent);
- ``responses, store: false``: the same without the store;
- ``messages``: ``POST /v1/messages`` (Anthropic's shape, over the same upstream).

For each: requests/s at 50 connections, p50 and p99 at 1 connection, the p50 it adds
over the upstream alone, and its ratio to Chat Completions' in this run (the goal:
within 1.2x). The endpoints are measured in interleaved rounds (the order turning
each round; medians over the rounds), so a machine that slows down for a while does
not land on one of them only.

    python tests/benchmarks/bench_apis.py [--quick] [--table]

(``run.py`` runs it as its ``apis`` section; ``--table`` prints a Markdown table after
the JSON.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_gateway import start, stop_tree, wrk
from common import MODEL, free_port, upstream

PROMPT = [{"role": "user", "content": "Say hello."}]
ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": f"bench/{MODEL}", "messages": PROMPT}),
    "responses": ("/v1/responses", {"model": f"bench/{MODEL}", "input": "Say hello."}),
    "responses, store: false": (
        "/v1/responses",
        {"model": f"bench/{MODEL}", "input": "Say hello.", "store": False},
    ),
    "messages": ("/v1/messages", {"model": f"bench/{MODEL}", "max_tokens": 64, "messages": PROMPT}),
}


def run(quick: bool) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"error": "wrk is not installed (apt-get install wrk)"}
    seconds, rounds = (2.0, 2) if quick else (6.0, 4)
    out: dict[str, Any] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMKERNEL_")}
    bindir = Path(sys.executable).parent
    with upstream() as base, tempfile.TemporaryDirectory(prefix="llmkernel-bench-apis-") as tmp:
        out["upstream"] = {
            "c1": wrk(f"{base}/chat/completions", connections=1, seconds=seconds, threads=1)
        }
        config = Path(tmp) / "gateway.toml"
        config.write_text(
            f'[providers.bench]\ntype = "openai"\nbase_url = "{base}"\napi_key_required = false\n'
            f'\n[plugin.gateway]\naccess_log = false\nresponses_path = "{tmp}/responses.db"\n'
        )
        port = free_port()
        argv = [str(bindir / "llmkernel"), "-c", str(config), "serve", "--port", str(port)]
        process, _ = start(argv, f"http://127.0.0.1:{port}/health", env)
        runs: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in ENDPOINTS}
        try:
            names = list(ENDPOINTS)
            for name in names:  # warm every path up first
                path, body = ENDPOINTS[name]
                wrk(
                    f"http://127.0.0.1:{port}{path}",
                    connections=10,
                    seconds=1.0,
                    body=json.dumps(body),
                )
            for round_ in range(rounds):  # interleaved, the order turning each round
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    path, body = ENDPOINTS[name]
                    url, text = f"http://127.0.0.1:{port}{path}", json.dumps(body)
                    runs[name].append(
                        {
                            "c50": wrk(url, connections=50, seconds=seconds, body=text),
                            "c1": wrk(url, connections=1, seconds=seconds, threads=1, body=text),
                        }
                    )
        finally:
            stop_tree(process)
        for name, rows in runs.items():
            out[name] = {
                load: {k: statistics.median(r[load][k] for r in rows) for k in rows[0][load]}
                for load in ("c50", "c1")
            }
            out[name]["rounds"] = len(rows)
    up = out["upstream"]["c1"]["p50_ms"]
    chat = out["chat"]
    for name in ENDPOINTS:
        row = out[name]
        row["added_p50_c1_ms"] = row["c1"]["p50_ms"] - up
        row["rps_ratio_to_chat"] = chat["c50"]["rps"] / row["c50"]["rps"]
        row["added_p50_ratio_to_chat"] = row["added_p50_c1_ms"] / max(chat["added_p50_c1_ms"], 1e-9)
    return out


def table(out: dict[str, Any]) -> str:
    lines = [
        "| endpoint | req/s at 50 conns | p50 / p99 at 1 conn (ms) | added p50 (ms) | "
        "chat's req/s ÷ this | added p50 ÷ chat's |",
        "|---|---|---|---|---|---|",
    ]
    for name in ENDPOINTS:
        row = out.get(name)
        if not row or "c50" not in row:
            continue
        lines.append(
            f"| {name} | {row['c50']['rps']:.0f} | {row['c1']['p50_ms']:.2f} / "
            f"{row['c1']['p99_ms']:.2f} | {row['added_p50_c1_ms']:.2f} | "
            f"{row['rps_ratio_to_chat']:.2f} | {row['added_p50_ratio_to_chat']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    result = run(args.quick)
    print(json.dumps(result, indent=1))
    if args.table and "error" not in result:
        print(table(result))
