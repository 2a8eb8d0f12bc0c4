"""The report page's timeline: calls per second as stacked SVG bars, 429s and retries marked.

Counted as the call log is read (memory grows with the run's seconds, not its calls) and
drawn here as plain SVG, so the page needs no chart library. A long run's seconds are merged
into wider bars so the chart never has more than :data:`MAX_BARS` of them.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_BARS", "Timeline"]

MAX_BARS = 240
"""The most bars the report page's timeline draws, however long the run."""
_MIN_SLOTS = 30  # a short run's few bars stay bars, not one block across the chart

# Bottom to top; each kind's colour and legend label.
_KINDS = (("ok", "#4a7bd0", "answered"), ("retry", "#f0a030", "retry (attempt 2+)"),
          ("r429", "#d33", "429 rate limited"), ("error", "#555", "other failure"))
_W, _H, _LEFT, _BOTTOM, _TOP = 900, 220, 44, 34, 26


def kind_of(call: dict[str, Any]) -> str:
    """Which bar segment a call counts in."""
    status, code = call.get("status"), call.get("code")
    if status == 429 or code == 43:
        return "r429"
    if not isinstance(status, int) or status >= 300 or code is not None:
        return "error"
    attempt = call.get("attempt")
    return "retry" if isinstance(attempt, int) and attempt > 1 else "ok"


@dataclass
class Timeline:
    """Calls counted per whole second of their start time, per kind."""

    seconds: dict[int, Counter[str]] = field(default_factory=dict)

    def add(self, call: dict[str, Any]) -> None:
        """Count one call record (one without a usable time is left out of the chart)."""
        when = call.get("time")
        if isinstance(when, bool) or not isinstance(when, (int, float)) or not math.isfinite(when):
            return
        self.seconds.setdefault(int(when), Counter())[kind_of(call)] += 1

    def bars(self) -> tuple[int, list[Counter[str]]]:
        """The width of one bar in seconds and the bars, first second first."""
        if not self.seconds:
            return 1, []
        start, end = min(self.seconds), max(self.seconds)
        width = max(1, math.ceil((end - start + 1) / MAX_BARS))
        bars = [Counter[str]() for _ in range((end - start) // width + 1)]
        for second, counts in self.seconds.items():
            bars[(second - start) // width].update(counts)
        return width, bars

    def section(self) -> str:
        """The timeline's heading, chart and legend as HTML."""
        width, bars = self.bars()
        if not bars:
            return "<h2>Timeline</h2><p id='no-calls'>No API call was made.</p>"
        unit = "second" if width == 1 else f"{width} seconds"
        totals = Counter[str]()
        for bar in bars:
            totals.update(bar)
        top = max(sum(bar.values()) for bar in bars) or 1
        plot_w, plot_h = _W - _LEFT - 8, _H - _BOTTOM - _TOP
        step = plot_w / max(len(bars), _MIN_SLOTS)
        shapes: list[str] = []
        for index, bar in enumerate(bars):
            x, y = _LEFT + index * step, float(_TOP + plot_h)
            label = (f"+{index * width}s: {sum(bar.values())} calls, {bar['r429']} 429, "
                     f"{bar['retry']} retries, {bar['error']} other failures")
            parts = []
            for kind, colour, _ in _KINDS:
                if not bar[kind]:
                    continue
                h = bar[kind] / top * plot_h
                y -= h
                parts.append(f"<rect class='{kind}' x='{x:.1f}' y='{y:.1f}' "
                             f"width='{max(step - 1, 0.8):.1f}' height='{h:.1f}' "
                             f"fill='{colour}'/>")
            if bar["r429"] or bar["retry"]:  # a mark above the bar, visible even when thin
                colour = "#d33" if bar["r429"] else "#f0a030"
                cx = x + step / 2
                parts.append(f"<path class='mark' d='M{cx:.1f} {y - 2:.1f} l-4 -7 h8 z' "
                             f"fill='{colour}'/>")
            shapes.append(f"<g><title>{html.escape(label)}</title>{''.join(parts)}</g>")
        span = len(bars) * width
        axis = (f"<line x1='{_LEFT}' y1='{_TOP + plot_h}' x2='{_W - 8}' y2='{_TOP + plot_h}' "
                f"stroke='#99a'/><text x='{_LEFT - 6}' y='{_TOP + 4}' text-anchor='end'>{top}"
                f"</text><text x='{_LEFT - 6}' y='{_TOP + plot_h}' text-anchor='end'>0</text>"
                f"<text x='{_LEFT}' y='{_TOP + plot_h + 16}'>0 s</text>"
                f"<text x='{_W - 8}' y='{_TOP + plot_h + 16}' text-anchor='end'>{span} s</text>")
        legend, lx = [], _LEFT
        for kind, colour, name in _KINDS:
            text = f"{name} ({totals[kind]:,})"
            legend.append(f"<rect x='{lx}' y='6' width='10' height='10' fill='{colour}'/>"
                          f"<text x='{lx + 14}' y='15'>{html.escape(text)}</text>")
            lx += 24 + 7 * len(text)
        return (f"<h2>Timeline <small>(calls per {unit})</small></h2>"
                f"<svg id='timeline' role='img' aria-label='calls per {unit}' "
                f"viewBox='0 0 {_W} {_H}' width='100%' xmlns='http://www.w3.org/2000/svg'>"
                f"{''.join(legend)}{axis}{''.join(shapes)}</svg>")
