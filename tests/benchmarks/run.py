"""The whole benchmark suite in one go: one table on stdout, JSON in .bench/results.json.

    uvx nox -s bench                 # installs LiteLLM[proxy], openai, aiohttp, ... and runs this
    uvx nox -s bench -- --quick      # smaller counts (about 4 minutes)
    python tests/benchmarks/run.py --only calls,local

Each section runs in its own interpreter (so LiteLLM's imports and background tasks
never touch another section); every figure is a ratio against a baseline measured in
the same section, interleaved. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SECTIONS = ["import", "calls", "local", "ledger", "gateway", "apis", "otel", "semantic"]


def section(name: str, quick: bool, clean_python: str | None) -> dict[str, Any]:
    argv = [sys.executable, str(HERE / f"bench_{name}.py")] + (["--quick"] if quick else [])
    if name == "import" and clean_python:
        argv += ["--clean-python", clean_python]
    # every process of the suite reads and writes compiled bytecode (as an installed
    # package has it: pip compiles at install), in one cache of the suite's own, even
    # where PYTHONDONTWRITEBYTECODE is set (as in this project's sessions): otherwise
    # every start and import would be timed compiling every module
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(ROOT / ".bench" / "pycache")
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=HERE, check=False, env=env)
    took = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": done.stderr[-3000:], "seconds": took}
    result: dict[str, Any] = json.loads(done.stdout)
    result["seconds"] = took
    return result


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    from importlib import metadata

    for dist in ("llmkernel", "httpx", "aiohttp", "httpx-aiohttp", "litellm", "openai", "tiktoken"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "versions": versions,
    }


Row = tuple[str, str, str, str, str, str]  # figure, llmkernel, baseline, LiteLLM, target, met


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _met(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


def rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    imp = r.get("import", {})
    if "error" not in imp and imp:
        httpx = imp["import httpx"]["ms"]
        lit = imp.get("import litellm", {})
        k = imp["import llmkernel"]
        out.append(
            (
                "import llmkernel",
                f"{k['ms']:.0f} ms ({k['x_httpx']:.2f}x)",
                f"import httpx {httpx:.0f} ms",
                f"import litellm {_f(lit.get('ms'), '{:.0f}')} ms ({_f(lit.get('x_httpx'))}x)",
                "",
                "",
            )
        )
        fc = imp["Kernel.from_config() (every first-party plugin)"]
        out.append(
            (
                f"import + Kernel.from_config(), {imp.get('plugins_loaded')} plugins",
                f"{fc['ms']:.0f} ms ({fc['x_httpx']:.2f}x)",
                "import httpx",
                "",
                "<= 2x",
                _met(fc["x_httpx"] <= 2),
            )
        )
        h = imp["llmkernel --help (whole process)"]
        out.append(
            (
                "llmkernel --help (whole process)",
                f"{h['ms']:.0f} ms",
                "",
                "",
                "< 300 ms",
                _met(h["ms"] < 300),
            )
        )
    calls = r.get("calls", {})
    for kind, lit_name in (("sync", "litellm.completion"), ("async", "litellm.acompletion")):
        pc = calls.get(f"per_call_{kind}")
        if not pc:
            continue
        bare = pc["bare httpx"]["median_us"]
        lit = pc.get(lit_name, {})
        sdk = pc.get("openai SDK", {})
        m, f = pc["kernel minimal"], pc["kernel full"]
        floor = pc.get("bare httpx, second client", {}).get("added_p99_us", 0.0)
        ours = pc.get("httpx over llmkernel AiohttpTransport")
        if floor:
            out.append(
                (
                    f"per call {kind}: a second, identical bare httpx client (noise floor)",
                    f"p99 +{floor:.0f} us",
                    f"bare httpx {bare:.0f} us",
                    "",
                    "",
                    "",
                )
            )
        if ours:
            out.append(
                (
                    f"per call {kind}: httpx over llmkernel's AiohttpTransport (reference)",
                    f"{ours['ratio']:.2f}x (+{ours['added_median_us']:.0f} us)",
                    f"bare httpx {bare:.0f} us",
                    "",
                    "",
                    "",
                )
            )
        out.append(
            (
                f"per call {kind}, minimal stack",
                f"{m['ratio']:.2f}x (+{m['added_median_us']:.0f} us, p99 +{m['added_p99_us']:.0f} us)",  # noqa: E501
                f"bare httpx {bare:.0f} us",
                f"{_f(lit.get('ratio'))}x (openai SDK {_f(sdk.get('ratio'))}x)",
                "<= 1.15x",
                _met(m["ratio"] <= 1.15),
            )
        )
        out.append(
            (
                f"per call {kind}, full default stack",
                f"{f['ratio']:.2f}x (+{f['added_median_us']:.0f} us, "
                f"p99 +{f['added_p99_us']:.0f} us = floor +{f['added_p99_us'] - floor:.0f} us)",
                f"bare httpx {bare:.0f} us",
                "",
                "<= 1.5x, p99 added < 1 ms over the floor",
                _met(f["ratio"] <= 1.5 and f["added_p99_us"] - floor < 1000),
            )
        )
    conc = calls.get("concurrency")
    if conc:
        lit = conc.get("litellm.acompletion")
        for c in ("1", "50", "200"):
            km, kf = conc["kernel minimal"][c]["rps"], conc["kernel full"][c]["rps"]
            base = ", ".join(
                f"{n} {conc[n][c]['rps']:.0f}"
                for n in (
                    "bare aiohttp",
                    "httpx over llmkernel AiohttpTransport",
                    "httpx over aiohttp",
                    "bare httpx",
                )
                if n in conc
            )
            l_rps = lit[c]["rps"] if lit else None
            out.append(
                (
                    f"achat req/s, {c} callers (minimal / full)",
                    f"{km:.0f} / {kf:.0f}",
                    base,
                    f"{_f(l_rps, '{:.0f}')} (minimal {_f(km / l_rps if l_rps else None, '{:.1f}')}x, full {_f(kf / l_rps if l_rps else None, '{:.1f}')}x)",  # noqa: E501
                    ">= 10x LiteLLM" if c == "50" else "",
                    _met(km / l_rps >= 10) if (c == "50" and l_rps) else "",
                )
            )
    st = calls.get("streaming")
    if st:
        out.append(
            (
                "stream: time to first text",
                f"{st['ttft_ratio']:.2f}x (+{st['ttft_added_us']:.0f} us)",
                f"bare httpx {st['ttft_bare_us']:.0f} us",
                "",
                "<= 1.1x",
                _met(st["ttft_ratio"] <= 1.1),
            )
        )
        out.append(
            (
                "stream: overhead per chunk",
                f"{st['per_chunk_us']:.1f} us",
                f"bare httpx, {st['chunks']} chunks",
                "",
                "< 20 us",
                _met(st["per_chunk_us"] < 20),
            )
        )
    loc = r.get("local", {})
    if "cache" in loc:
        c = loc["cache"]
        out.append(
            (
                f"cache hit, memory (achat; bursts of {c.get('hits_per_sample', 1)})",
                f"{c['memory_us']:.0f} us (p99 {c['memory_p99_us']:.0f})",
                f"bare httpx call {c['bare_call_us']:.0f} us",
                "",
                "< 100 us",
                _met(c["memory_us"] < 100),
            )
        )
        out.append(
            (
                f"cache hit, SQLite (achat; bursts of {c.get('hits_per_sample', 1)})",
                f"{c['sqlite_us']:.0f} us (p99 {c['sqlite_p99_us']:.0f})",
                f"bare httpx call {c['bare_call_us']:.0f} us",
                "",
                "< 1 ms",
                _met(c["sqlite_us"] < 1000),
            )
        )
    if "tokens" in loc:
        t = loc["tokens"]
        out.append(
            (
                f"count tokens, short chat ({t['tokens']} tokens)",
                f"{t['kernel_us']:.0f} us ({t['ratio']:.2f}x)",
                f"raw tiktoken {t['raw_us']:.0f} us",
                "",
                "<= 2x",
                _met(t["ratio"] <= 2),
            )
        )
    if "ledger" in loc:
        lg = loc["ledger"]
        cps = lg["calls_per_s"]
        out.append(
            (
                "ledger: mock calls/s, one caller (none / ledger / +budget)",
                f"{cps['ledger']:.0f} / {cps['ledger + budget']:.0f}",
                f"no ledger {cps['no ledger']:.0f}",
                "",
                "",
                "",
            )
        )
        out.append(
            (
                "budget reservation, per call",
                f"+{lg['reservation_us']:.0f} us (p99 +{lg['reservation_p99_us']:.0f})",
                f"call with ledger {lg['call_ledger_us']:.0f} us",
                "",
                "",
                "",
            )
        )
    led = r.get("ledger", {})
    if led and "error" not in led:
        for kind in ("sync", "async"):
            pc = led[f"per_call_{kind}"]
            durable, fast = pc["durable"], pc["fast"]
            out.append(
                (
                    f"ledger {kind}, one caller: durable / fast (added per call)",
                    f"+{durable['added_median_us']:.0f} / +{fast['added_median_us']:.0f} us"
                    f" ({durable['ratio']:.2f}x / {fast['ratio']:.2f}x)",
                    f"mock call, no ledger {pc['no ledger']['median_us']:.0f} us",
                    "",
                    "",
                    "",
                )
            )
        c50 = led["concurrent_50"]
        out.append(
            (
                "ledger, 50 callers: calls/s durable / fast",
                f"{c50['durable']['calls_per_s']:.0f} / {c50['fast']['calls_per_s']:.0f}"
                f" ({c50['durable']['ratio']:.2f}x / {c50['fast']['ratio']:.2f}x)",
                f"no ledger {c50['no ledger']['calls_per_s']:.0f}",
                "",
                "",
                "",
            )
        )
    gw = r.get("gateway", {})
    if gw and "upstream" in gw:
        up = gw["upstream"]
        lit1 = gw.get("litellm proxy, 1 worker", {})
        for w in ("1 worker", "2 workers"):
            g = gw.get(f"llmkernel serve, {w}", {})
            lg = gw.get(f"litellm proxy, {w}", {})
            if "error" in g or not g:
                out.append((f"gateway {w}", "error", "", "", "", ""))
                continue
            l50 = lg.get("c50", {}).get("rps") if "error" not in lg else None
            out.append(
                (
                    f"gateway {w}: req/s at 50 conns",
                    f"{g['c50']['rps']:.0f}",
                    f"upstream {up['c50']['rps']:.0f}",
                    f"{_f(l50, '{:.0f}')} ({_f(g['c50']['rps'] / l50 if l50 else None, '{:.1f}')}x)"
                    if "error" not in lg
                    else "failed: see JSON",
                    ">= 20x LiteLLM",
                    _met(g["c50"]["rps"] / l50 >= 20) if l50 else "",
                )
            )
            out.append(
                (
                    f"gateway {w}: added p50 / p99 at 1 conn",
                    f"{g['added_p50_c1_ms']:.2f} / {g['added_p99_c1_ms']:.2f} ms",
                    f"upstream p50 {up['c1']['p50_ms']:.2f} ms",
                    f"{_f(lg.get('added_p50_c1_ms'))} / {_f(lg.get('added_p99_c1_ms'))} ms",
                    "p50 < 1 ms",
                    _met(g["added_p50_c1_ms"] < 1),
                )
            )
            out.append(
                (
                    f"gateway {w}: p50 / p99 at 50 conns",
                    f"{g['c50']['p50_ms']:.1f} / {g['c50']['p99_ms']:.1f} ms",
                    f"upstream {up['c50']['p50_ms']:.1f} / {up['c50']['p99_ms']:.1f} ms",
                    f"{_f(lg.get('c50', {}).get('p50_ms'), '{:.1f}')} / {_f(lg.get('c50', {}).get('p99_ms'), '{:.1f}')} ms",  # noqa: E501
                    "",
                    "",
                )
            )
            out.append(
                (
                    f"gateway {w}: resident MiB idle / under load",
                    f"{g['rss_idle_mib']:.0f} / {g['rss_load_peak_mib']:.0f}",
                    "",
                    f"{_f(lg.get('rss_idle_mib'), '{:.0f}')} / {_f(lg.get('rss_load_peak_mib'), '{:.0f}')}",  # noqa: E501
                    "< 100 MiB" if w == "1 worker" else "",
                    _met(g["rss_load_peak_mib"] < 100) if w == "1 worker" else "",
                )
            )
            out.append(
                (
                    f"gateway {w}: start (to first health 200; llmkernel median of "
                    f"{len(g.get('starts_s', [1]))}, LiteLLM one)",
                    f"{g['start_s']:.2f} s",
                    "",
                    f"{_f(lg.get('start_s'))} s",
                    "< 1 s" if w == "1 worker" else "",
                    _met(g["start_s"] < 1.0) if w == "1 worker" else "",
                )
            )
        del lit1
    apis = r.get("apis", {})
    chat = apis.get("chat")
    if chat and "c50" in chat:
        for name in ("responses", "responses, store: false", "messages"):
            row = apis.get(name)
            if not row or "c50" not in row:
                continue
            worst = max(row["rps_ratio_to_chat"], row["added_p50_ratio_to_chat"])
            out.append(
                (
                    f"gateway /v1/{name}: req/s at 50 / added p50 at 1 conn",
                    f"{row['c50']['rps']:.0f} / {row['added_p50_c1_ms']:.2f} ms",
                    f"chat {chat['c50']['rps']:.0f} / {chat['added_p50_c1_ms']:.2f} ms",
                    "",
                    "within 1.2x chat",
                    _met(worst <= 1.2),
                )
            )
    sem = r.get("semantic", {})
    if sem and "error" not in sem:
        for n, figure in sem["search"].items():
            out.append(
                (
                    f"semantic search, {int(n):,} entries in a partition (numpy)",
                    f"{figure['median_us']:.0f} us (p99 {figure['p99_us']:.0f} us)",
                    "",
                    "",
                    "< 2 ms at 10k" if n == "10000" else "",
                    _met(figure["median_us"] < 2000) if n == "10000" else "",
                )
            )
        real = sem.get("real model")
        if real:
            q = real["quality"]
            out.append(
                (
                    "semantic cache on the labelled set (multilingual-e5-small)",
                    f"{q['paraphrase']['served']}/{q['paraphrase']['pairs']} paraphrases, "
                    f"{q['lookalike']['served']}/{q['lookalike']['pairs']} look-alikes served",
                    f"embedding call {real['embedding call ms']['median']:.1f} ms",
                    "",
                    "0 look-alikes, >= half the paraphrases",
                    _met(
                        q["lookalike"]["served"] == 0
                        and 2 * q["paraphrase"]["served"] >= q["paraphrase"]["pairs"]
                    ),
                )
            )
    out += otel_rows(r.get("otel", {}))
    return out


def otel_rows(o: dict[str, Any]) -> list[Row]:
    """llmkernel-otel's cost per call (CPU time, the mock provider)."""
    if not o or "error" in o:
        return []
    out: list[Row] = []
    for phase, stacks in (("not_imported", o["not_imported"]), ("imported", o["imported"])):
        for stack, rows_ in stacks.items():
            base = rows_["without the plugin"]["fastest_us"]
            for name, row in rows_.items():
                if name == "without the plugin":
                    continue
                target = (phase, stack) == ("not_imported", "minimal") and name.startswith("plugin")
                out.append(
                    (
                        f"otel, {stack} stack: {name}",
                        f"+{row['added_fastest_us']:.1f} us (median +{row['added_median_us']:.1f})",
                        f"without {base:.0f} us CPU",
                        "",
                        "< +5 us" if target else "",
                        _met(row["added_fastest_us"] < 5) if target else "",
                    )
                )
    sdk = o["sdk"]
    for name, row in sdk.items():
        if name != "without the plugin":
            out.append(
                (
                    f"otel, minimal stack: {name}",
                    f"+{row['added_fastest_us']:.0f} us (median +{row['added_median_us']:.0f})",
                    f"without {sdk['without the plugin']['fastest_us']:.0f} us CPU",
                    "",
                    "reported",
                    "",
                )
            )
    return out


def table(rs: list[Row]) -> str:
    head = ("figure", "llmkernel", "baseline (same run)", "LiteLLM (same run)", "target", "met")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rs]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)}")
    parser.add_argument(
        "--clean-python", help="interpreter of an llmkernel-only environment, for imports"
    )
    parser.add_argument("--out", default=str(ROOT / ".bench" / "results.json"))
    parser.add_argument("--table-from", help="print the table of an earlier results.json")
    args = parser.parse_args()
    if args.table_from:
        print(table(rows(json.loads(Path(args.table_from).read_text())["results"])))
        return
    chosen = args.only.split(",") if args.only else SECTIONS
    info = machine()
    results: dict[str, Any] = {}
    for name in chosen:
        print(f"running {name}...", file=sys.stderr, flush=True)
        results[name] = section(name, args.quick, args.clean_python)
        if "error" in results[name]:
            print(f"{name} failed:\n{results[name]['error']}", file=sys.stderr)
    info["load_average_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "quick": args.quick, "results": results}, indent=1))
    print(
        f"{info['date']}; {info['cpu']}, {info['cores']} cores; Python {info['python']}; "
        f"load {info['load_average_at_start'][0]:.1f} -> {info['load_average_at_end'][0]:.1f}"
    )
    print(table(rows(results)))
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
