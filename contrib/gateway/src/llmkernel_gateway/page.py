"""The dashboard (``GET /``): server-rendered HTML with inline SVG charts, no
external asset. A few lines of JavaScript fetch the page again every
``status_refresh`` seconds and swap its body in, so every number is drawn by the
server (and escaped there) and is the number ``/status.json`` answers.

Each number shown carries ``data-stat``, its path in ``/status.json`` (a JSON
list), and ``data-value``, the value there.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from llmkernel_gateway.charts import bar_chart

__all__ = ["login", "render"]

_STYLE = """
:root{--fg:#1d232a;--muted:#6a737d;--line:#e3e6ea;--bar:#3b6fd8;--err:#d2322d;
--warn:#b26a00;--tile:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:16px;color:var(--fg);max-width:1400px}
header{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:baseline}
h1{font-size:20px;margin:0}h2{font-size:15px;margin:18px 0 8px}
.muted{color:var(--muted)}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.tile{background:var(--tile);border-radius:6px;padding:8px 10px}
.tile b{display:block;font-size:20px}.tile small{color:var(--muted);font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,1fr));gap:8px 16px}
figure{margin:0}figcaption{font-size:12px;color:var(--muted)}
svg.chart{width:100%;height:120px;display:block;background:var(--tile);border-radius:4px}
svg .bar{fill:var(--bar)}svg .part{fill:var(--err)}svg .base{stroke:var(--line)}
svg .axis{font-size:11px;fill:var(--muted)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
tr.breaker-open td{background:#fde2e1}tr.breaker-half_open td{background:#fff1d6}
.state-open,.key-disabled,.key-expired{color:var(--err);font-weight:600}.state-half_open{color:var(--warn);font-weight:600}
.over{color:var(--err);font-weight:600}
meter{width:70px;vertical-align:middle}
@media (max-width:600px){body{padding:8px}.charts{grid-template-columns:1fr}
.tile b{font-size:17px}th,td{padding:3px 5px}}
"""

_SCRIPT = """
async function refresh() {
  try {
    const r = await fetch(location.pathname, {credentials: "same-origin", cache: "no-store"});
    if (!r.ok) return;
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const next = doc.getElementById("dash");
    if (next) {
      document.getElementById("dash").replaceWith(next);
      next.dataset.live = "1";
    }
  } catch (e) { /* the next poll tries again */ }
}
refresh();
setInterval(refresh, %d);
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _shown(value: Any, kind: str) -> str:
    if value is None:
        return "\u2014"
    if kind == "rate":
        return f"{float(value) * 100:.1f}%"
    if kind == "ms":
        return f"{float(value):.1f}"
    if kind == "usd":
        return f"${value}"
    return str(value)


def _stat(path: Sequence[str], value: Any, kind: str = "") -> str:
    """A number, with its ``/status.json`` path and value."""
    raw = "" if value is None else str(value)
    return (
        f'<span data-stat="{_e(json.dumps(list(path)))}" data-value="{_e(raw)}">'
        f"{_e(_shown(value, kind))}</span>"
    )


def _table(head: Sequence[str], rows: Sequence[str], empty: str, name: str) -> str:
    cols = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(rows) or f'<tr><td colspan="{len(head)}" class="muted">{_e(empty)}</td></tr>'
    return (
        f'<div class="scroll"><table data-table="{_e(name)}"><thead><tr>{cols}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _tiles(status: Mapping[str, Any]) -> str:
    day = ("totals", "day")
    d = status["totals"]["day"]
    h = status["totals"]["hour"]
    tiles = [
        ("Requests (hour)", _stat(("totals", "hour", "requests"), h["requests"])),
        ("Requests (24 h)", _stat((*day, "requests"), d["requests"])),
        ("Errors (24 h)", _stat((*day, "errors"), d["errors"])),
        ("Error rate (24 h)", _stat((*day, "error_rate"), d["error_rate"], "rate")),
        ("Latency p50 ms", _stat((*day, "latency_p50_ms"), d["latency_p50_ms"], "ms")),
        ("Latency p95 ms", _stat((*day, "latency_p95_ms"), d["latency_p95_ms"], "ms")),
        ("TTFT p50 ms", _stat((*day, "ttft_p50_ms"), d["ttft_p50_ms"], "ms")),
        ("TTFT p95 ms", _stat((*day, "ttft_p95_ms"), d["ttft_p95_ms"], "ms")),
        ("Input tokens (24 h)", _stat((*day, "input_tokens"), d["input_tokens"])),
        ("Output tokens (24 h)", _stat((*day, "output_tokens"), d["output_tokens"])),
        ("Cost (24 h)", _stat((*day, "cost"), d["cost"], "usd")),
        ("Cache hit rate", _stat(("cache", "hit_rate"), status["cache"]["hit_rate"], "rate")),
    ]
    return (
        '<div class="tiles">'
        + "".join(
            f'<div class="tile"><b>{value}</b><small>{_e(title)}</small></div>'
            for title, value in tiles
        )
        + "</div>"
    )


def _charts(status: Mapping[str, Any]) -> str:
    figures = []
    for window, step, caption in (
        ("minute", 60, "last hour, by minute"),
        ("hour", 3600, "last 24 hours, by hour"),
    ):
        points = status["series"][window]
        for name, title, value, unit in (
            ("requests", "Requests (errors in red)", lambda p: p["requests"], "{:g}"),
            ("tokens", "Tokens", lambda p: p["input_tokens"] + p["output_tokens"], "{:g}"),
            ("cost", "Cost (USD)", lambda p: float(p["cost"]), "${:.6g}"),
        ):
            svg = bar_chart(
                f"{name}-{window}",
                points,
                value,
                step=step,
                unit=unit.format,
                part=(lambda p: p["errors"]) if name == "requests" else None,
                part_name="errors",
            )
            figures.append(f"<figure>{svg}<figcaption>{_e(title)}, {caption}</figcaption></figure>")
    return '<div class="charts">' + "".join(figures) + "</div>"


def _deployments(status: Mapping[str, Any]) -> str:
    rows = []
    for name, row in status["deployments"].items():
        state = row.get("breaker") or "closed"
        p = ("deployments", name)
        cells = [
            _stat((*p, "requests"), row.get("requests")),
            _stat((*p, "errors"), row.get("errors")),
            _stat((*p, "error_rate"), row.get("error_rate"), "rate"),
            _stat((*p, "latency_p50_ms"), row.get("latency_p50_ms"), "ms"),
            _stat((*p, "latency_p95_ms"), row.get("latency_p95_ms"), "ms"),
            _stat((*p, "ttft_p50_ms"), row.get("ttft_p50_ms"), "ms"),
            _stat((*p, "ttft_p95_ms"), row.get("ttft_p95_ms"), "ms"),
            _stat((*p, "cost_today"), row.get("cost_today"), "usd"),
            f'<span class="state-{_e(state)}">{_e(state.replace("_", "-"))}</span>',
            _live(row.get("live") or {}),
            _health(row.get("health_check")),
        ]
        tds = "".join(f"<td>{c}</td>" for c in cells)
        rows.append(
            f'<tr class="breaker-{_e(state)}" data-deployment="{_e(name)}"><td>{_e(name)}</td>'
            f"{tds}</tr>"
        )
    head = ["Deployment", "Requests", "Errors", "Error rate", "p50 ms", "p95 ms"]
    head += ["TTFT p50", "TTFT p95", "Cost today", "Breaker", "Live settings", "Health check"]
    return _table(head, rows, "no requests yet", "deployments")


def _health(check: Any) -> str:
    """The provider's last health check (``llmkernel-routing``; with ``[redis]`` the
    fleet's newest, ``by`` the instance that made it)."""
    if not isinstance(check, Mapping):
        return "\u2014"
    state = (
        '<span class="state-closed">ok</span>'
        if check.get("ok")
        else ('<span class="state-open">failing</span>')
    )
    age = check.get("age")
    return state + (f" ({_e(f'{float(age):.0f}')} s ago)" if age is not None else "")


def _live(live: Mapping[str, Any]) -> str:
    """A deployment's settings changed by an operator (PATCH /admin/deployments)."""
    parts = []
    if live.get("disabled"):
        parts.append('<span class="state-open">disabled</span>')
    for name in ("priority", "weight"):
        if live.get(name) is not None:
            parts.append(f"{name} {_e(str(live[name]))}")
    return ", ".join(parts) or "\u2014"


def _keys(status: Mapping[str, Any]) -> str:
    rows = []
    for name, row in status.get("keys", {}).items():
        p = ("keys", name)
        spend = []
        for period in ("day", "month", "total"):
            used = row["spend"][period]
            limit = row["budget"].get(period)
            text = _stat((*p, "spend", period), used, "usd")
            if limit is not None:
                share = float(used) / float(limit) if float(limit) else 1.0
                over = ' class="over"' if share >= 1 else ""
                text = (
                    f"<span{over}>{text} / "
                    f"{_stat((*p, 'budget', period), limit, 'usd')}</span> "
                    f'<meter min="0" max="1" high="0.8" value="{min(share, 1.0):.3f}"></meter>'
                )
            spend.append(text)
        state = row.get("state", "active")
        source = "config file" if row.get("source") == "config" else "key store"
        cells = [
            _e(row.get("tenant") or "\u2014"),
            f'<span class="key-{_e(state)}">{_e(state)}</span> ({_e(source)})',
            _stat((*p, "requests_today"), row["requests_today"]),
            *spend,
            _stat((*p, "refused_rate_limit"), row["refused_rate_limit"]),
            _stat((*p, "refused_budget"), row["refused_budget"]),
        ]
        tds = "".join(f"<td>{c}</td>" for c in cells)
        rows.append(f'<tr data-key-name="{_e(name)}"><td>{_e(name)}</td>{tds}</tr>')
    head = ["Key", "Tenant", "State", "Requests today", "Spend today", "This month", "Total"]
    head += ["Rate-limited", "Over budget"]
    return _table(head, rows, "no keys configured", "keys")


def _errors(status: Mapping[str, Any]) -> str:
    kinds = status["totals"]["day"]["errors_by_kind"]
    rows = [
        f'<tr data-error-kind="{_e(kind)}"><td>{_e(kind)}</td><td>'
        f"{_stat(('totals', 'day', 'errors_by_kind', kind), count)}</td></tr>"
        for kind, count in sorted(kinds.items())
    ]
    return _table(["Error kind (24 h)", "Calls"], rows, "no errors", "errors")


def _experiments(status: Mapping[str, Any]) -> str:
    rows = []
    for experiment, variants in status.get("experiments", {}).items():
        for variant, row in variants.items():
            p = ("experiments", experiment, variant)
            cells = [
                _e(variant),
                _stat((*p, "requests"), row["requests"]),
                _stat((*p, "share"), row["share"], "rate"),
                _stat((*p, "error_rate"), row["error_rate"], "rate"),
                _stat((*p, "latency_p50_ms"), row["latency_p50_ms"], "ms"),
                _stat((*p, "latency_p95_ms"), row["latency_p95_ms"], "ms"),
                _stat((*p, "ttft_p50_ms"), row["ttft_p50_ms"], "ms"),
                _stat((*p, "output_tokens"), row["output_tokens"]),
                _stat((*p, "cost"), row["cost"], "usd"),
            ]
            tds = "".join(f"<td>{c}</td>" for c in cells)
            rows.append(f'<tr data-variant="{_e(variant)}"><td>{_e(experiment)}</td>{tds}</tr>')
    head = ["Experiment", "Variant", "Requests", "Share", "Error rate", "p50 ms", "p95 ms"]
    head += ["TTFT p50", "Output tokens", "Cost"]
    return _table(head, rows, "no experiment calls in 24 h", "experiments")


def _redis(status: Mapping[str, Any]) -> str:
    redis = status.get("redis")
    if not status.get("redis_configured") and redis is None:
        return '<p class="muted">no [redis]: state is shared by this host\'s workers only</p>'
    if redis is None:
        return '<p class="over">[redis] is set, but no worker reports its link</p>'
    state = str(redis.get("state", "?"))
    cls = "" if state == "ok" else ' class="over"'
    parts = [f"<b{cls}>{_e(state)}</b>"]
    for field in ("reason", "calls", "failures", "outages", "instances", "fail_closed"):
        if redis.get(field) is not None:
            parts.append(f"{_e(field)} {_stat(('redis', field), redis[field])}")
    return "<p>Redis: " + ", ".join(parts) + "</p>"


def _fleet(status: Mapping[str, Any]) -> str:
    """With ``[redis]``: the totals of every instance's ledger."""
    fleet = status.get("fleet")
    if not isinstance(fleet, Mapping):
        return ""
    if fleet.get("error"):
        return f'<h2>Fleet</h2><p class="over">Not readable: {_e(str(fleet["error"]))}</p>'
    tiles = [("Instances", _stat(("fleet", "instances"), fleet["instances"]))]
    for window, label in (("hour", "hour"), ("day", "24 h")):
        w = ("fleet", window)
        tiles += [
            (f"Requests ({label})", _stat((*w, "requests"), fleet[window]["requests"])),
            (f"Errors ({label})", _stat((*w, "errors"), fleet[window]["errors"])),
            (f"Cost ({label})", _stat((*w, "cost"), fleet[window]["cost"], "usd")),
        ]
    d = ("fleet", "day")
    tiles += [
        ("Input tokens (24 h)", _stat((*d, "input_tokens"), fleet["day"]["input_tokens"])),
        ("Output tokens (24 h)", _stat((*d, "output_tokens"), fleet["day"]["output_tokens"])),
    ]
    cells = "".join(
        f'<div class="tile"><b>{value}</b><small>{_e(title)}</small></div>'
        for title, value in tiles
    )
    return f'<h2>Fleet (every instance)</h2><div class="tiles">{cells}</div>'


def render(status: Mapping[str, Any]) -> str:
    """The dashboard with the numbers of ``status`` (what ``/status.json`` answers)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(status["now"])))
    note = ""
    if status.get("source") != "ledger":
        note = (
            '<p class="over">No ledger (llmkernel-ledger): only the metrics\' deployments '
            "are shown.</p>"
        )
        body = f"<h2>Deployments</h2>{_deployments(status)}"
    else:
        body = (
            f"{_tiles(status)}{_fleet(status)}<h2>Over time</h2>{_charts(status)}"
            f"<h2>Deployments (24 h)</h2>{_deployments(status)}"
            f"<h2>Keys</h2>{_keys(status)}"
            f"<h2>Errors</h2>{_errors(status)}"
            f"<h2>Experiments (24 h)</h2>{_experiments(status)}"
        )
    if status.get("ledger_error"):
        note += f'<p class="over">The ledger could not be read: {_e(status["ledger_error"])}</p>'
    refresh = int(float(status.get("refresh_seconds", 3)) * 1000)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llmkernel gateway</title><style>{_STYLE}</style></head>
<body><div id="dash">
<header><h1>llmkernel gateway</h1>
<span class="muted" id="updated">{_e(when)}, worker {_e(status.get("pid"))}, every
worker's numbers (from the {_e(status.get("source"))})</span>
<form method="post" action="/logout"><button>Log out</button></form></header>
{note}{_redis(status)}{body}
</div>
<script>{_SCRIPT % refresh}</script>
</body></html>
"""


def login(message: str) -> str:
    """The key form shown instead of the page without a valid key."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llmkernel gateway</title><style>{_STYLE}</style></head><body>
<h1>llmkernel gateway</h1><p>{html.escape(message)}</p>
<form method="post" action="/login"><label>Key <input type="password" name="key"
autocomplete="current-password"></label> <button>Open</button></form>
</body></html>
"""
