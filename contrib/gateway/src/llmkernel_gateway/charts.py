"""Bar charts as inline SVG, drawn on the server: no script, no external asset.

A chart is one ``<svg>`` whose bars each carry a ``<title>`` (the bucket's time and
value, shown on hover); every text in it is escaped.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["bar_chart"]

WIDTH, HEIGHT, TOP, BOTTOM = 600, 150, 16, 18


def _label(ts: float, step: int) -> str:
    return time.strftime("%H:%M" if step < 3600 else "%d %H:00", time.gmtime(ts))


def bar_chart(
    name: str,
    points: Sequence[dict[str, Any]],
    value: Callable[[dict[str, Any]], float],
    *,
    step: int,
    unit: Callable[[float], str] = lambda v: f"{v:g}",
    part: Callable[[dict[str, Any]], float] | None = None,
    part_name: str = "",
) -> str:
    """Bars of ``value`` per point (``start`` is the bucket's epoch seconds), the
    ``part`` of each (errors of the requests) stacked in red at its foot."""
    values = [float(value(p)) for p in points]
    peak = max(values, default=0.0) or 1.0
    plot = HEIGHT - TOP - BOTTOM
    slot = WIDTH / max(1, len(points))
    bars = []
    for index, (point, amount) in enumerate(zip(points, values, strict=True)):
        x = index * slot
        tall = plot * amount / peak
        when = _label(point["start"], step)
        tip = f"{when} UTC: {unit(amount)}"
        shown = []
        if part is not None:
            piece = float(part(point))
            tip += f" ({unit(piece)} {part_name})" if piece else ""
            low = plot * piece / peak
            shown.append(
                f'<rect class="part" x="{x + 1:.1f}" y="{TOP + plot - low:.1f}" '
                f'width="{max(1.0, slot - 2):.1f}" height="{low:.1f}"></rect>'
            )
        bars.append(
            f'<g><title>{html.escape(tip)}</title><rect class="bar" x="{x + 1:.1f}" '
            f'y="{TOP + plot - tall:.1f}" width="{max(1.0, slot - 2):.1f}" '
            f'height="{tall:.1f}"></rect></g>'
        )
        bars.extend(shown)
    first = _label(points[0]["start"], step) if points else ""
    last = _label(points[-1]["start"], step) if points else ""
    total = unit(sum(values))
    return (
        f'<svg class="chart" data-chart="{html.escape(name)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'preserveAspectRatio="none" role="img" '
        f'aria-label="{html.escape(name)}: {html.escape(total)} in all">'
        f'<text x="2" y="11" class="axis">max {html.escape(unit(max(values, default=0.0)))}'
        f"</text>"
        f'<line x1="0" y1="{TOP + plot}" x2="{WIDTH}" y2="{TOP + plot}" class="base"></line>'
        f"{''.join(bars)}"
        f'<text x="2" y="{HEIGHT - 4}" class="axis">{html.escape(first)}</text>'
        f'<text x="{WIDTH - 2}" y="{HEIGHT - 4}" class="axis" text-anchor="end">'
        f"{html.escape(last)}</text></svg>"
    )
