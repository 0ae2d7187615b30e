"""The status page: server-rendered HTML, refreshed by a few lines of JavaScript
that poll ``/status.json``. No build step, no external assets."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

COLUMNS = (
    ("requests", "Requests"),
    ("error_rate", "Error rate"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p95_ms", "p95 ms"),
    ("ttft_p50_ms", "TTFT p50 ms"),
    ("ttft_p95_ms", "TTFT p95 ms"),
    ("cost_today", "Cost today (USD)"),
    ("breaker", "Breaker"),
)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}
th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}.muted{color:#777}
"""

_SCRIPT = """
const COLUMNS = %(columns)s;
function fmt(key, value) {
  if (value === null || value === undefined) return "\\u2014";
  if (key === "error_rate") return (value * 100).toFixed(1) + "%%";
  return String(value);
}
function draw(data) {
  const body = document.getElementById("rows");
  body.textContent = "";
  for (const [name, row] of Object.entries(data.deployments)) {
    const tr = document.createElement("tr");
    tr.dataset.deployment = name;
    const th = document.createElement("td");
    th.textContent = name;
    tr.appendChild(th);
    for (const [key] of COLUMNS) {
      const td = document.createElement("td");
      td.dataset.key = key;
      td.textContent = fmt(key, row[key]);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  document.getElementById("updated").textContent =
    "updated " + new Date(data.now * 1000).toISOString();
  document.getElementById("updated").dataset.live = "1";
}
async function refresh() {
  try {
    const r = await fetch("/status.json", {credentials: "same-origin", cache: "no-store"});
    if (r.ok) draw(await r.json());
  } catch (e) { /* the next poll tries again */ }
}
refresh();
setInterval(refresh, %(refresh)d);
"""


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "\u2014"
    if key == "error_rate":
        return f"{float(value) * 100:.1f}%"
    return str(value)


def render(status: Mapping[str, Any]) -> str:
    """The page with the numbers of ``status`` (what ``/status.json`` answers)."""
    rows = []
    for name, row in status["deployments"].items():
        cells = "".join(
            f'<td data-key="{key}">{html.escape(_cell(key, row.get(key)))}</td>'
            for key, _ in COLUMNS
        )
        rows.append(
            f'<tr data-deployment="{html.escape(name)}"><td>{html.escape(name)}</td>{cells}</tr>'
        )
    header = "".join(f"<th>{html.escape(title)}</th>" for _, title in COLUMNS)
    script = _SCRIPT % {
        "columns": json.dumps([list(c) for c in COLUMNS]),
        "refresh": int(float(status.get("refresh_seconds", 3)) * 1000),
    }
    empty = '<tr><td colspan="9" class="muted">no requests yet</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>llmkernel gateway</title><style>{_STYLE}</style></head>
<body>
<h1>llmkernel gateway</h1>
<p class="muted">Every worker's numbers since the server started (served by worker
{status.get("pid")}).
<span id="updated">rendered by the server</span></p>
<table><thead><tr><th>Deployment</th>{header}</tr></thead>
<tbody id="rows">{"".join(rows) or empty}</tbody></table>
<script>{script}</script>
</body></html>
"""


def login(message: str) -> str:
    """The key form shown instead of the page without a valid key."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmkernel gateway</title>
<style>{_STYLE}</style></head><body>
<h1>llmkernel gateway</h1><p>{html.escape(message)}</p>
<form method="post" action="/login"><label>Key <input type="password" name="key"
autocomplete="current-password"></label> <button>Open</button></form>
</body></html>
"""


__all__ = ["login", "render"]
