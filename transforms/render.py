"""Formatting shared by the funnel (markdown) and the report (HTML), and by every stage's
declared stats (``registry.StatKind``): one place for escaping and number formats.

Every piece of document text goes through ``e``: HTML-escaped, and control
characters from the data (NUL, ESC, bidirectional overrides such as U+202E)
shown as ``\\u202e`` rather than passed through, so a document cannot reorder
the report's text.
"""

from __future__ import annotations

import html
import re

from curate.classifiers.text import estimate_tokens


def size(docs: int, chars: int, tokens_per_char: float) -> dict:
    return {"docs": docs, "chars": chars, "tokens_est": estimate_tokens(chars, tokens_per_char)}


def fmt_int(n):
    return "-" if n is None else f"{n:,}"


def fmt_bytes(n: int) -> str:
    """A size in decimal units with three significant figures: 3,868 -> '3.87 KB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:,} B"


def fmt_pct(p):
    return "-" if p is None else f"{p:.2f}%"


# C0 and C1 controls (tab and newline excepted), DEL, and the Unicode bidirectional
# marks, embeddings, overrides and isolates (U+061C, U+200E-F, U+202A-E, U+2066-9).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def e(value) -> str:
    return html.escape(visible_controls(str(value)), quote=True)


def n(value) -> str:
    return "–" if value is None else f"{value:,}"


def pct(p) -> str:
    return "–" if p is None else f"{p:.2f}%"


def bars(
    rows: list[tuple[str, float, str]],
    width: int = 820,
    color: str = "#3b6ea8",
    unit_max: float | None = None,
    label_width: int = 290,
) -> str:
    """Horizontal bar chart: (label, value, value text)."""
    if not rows:
        return "<p class=muted>nothing to show</p>"
    top = unit_max or max(v for _, v, _ in rows) or 1
    h = 22
    parts = [f'<svg width="{width}" height="{h * len(rows) + 4}" role="img">']
    for i, (label, value, text) in enumerate(rows):
        y = i * h + 2
        w = max(1.0, (width - label_width - 110) * value / top) if value else 0
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" class=lbl>{e(label)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{w:.1f}" height="{h - 6}" fill="{color}"/>'
            f'<text x="{label_width + w + 6:.1f}" y="{y + 15}" class=val>{e(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ticks(top: int, count: int = 4) -> list[int]:
    """Round tick values from 0 to at least ``top`` (1, 2 or 5 times a power of ten apart)."""
    raw = max(top / count, 1)
    power = 10 ** (len(str(int(raw))) - 1)
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = list(range(0, top + step, step))
    return ticks if ticks[-1] >= top else [*ticks, ticks[-1] + step]


def histogram(
    counts: list[int], marks=(0.5, 0.8), width: int = 640, height: int = 180, x_label: str = "edu_score"
) -> str:
    """Vertical bars over [0, 1] in ``len(counts)`` bins: a y-axis of document counts with
    ticks, each bar's count above it, the x-axis with ticks and ``x_label``, dashed ``marks``."""
    n = len(counts)
    ticks = _nice_ticks(max(counts) if counts else 0)
    top = ticks[-1] or 1
    left, right, pad_top = 56, 10, 18  # room for tick labels, and for the count above the tallest bar
    plot_w, plot_h = width - left - right, height - pad_top
    base = pad_top + plot_h

    def y_of(value):
        return base - plot_h * value / top

    parts = [
        f'<svg width="{width}" height="{height + 44}" role="img" aria-label="{e(x_label)} histogram">',
        f'<line x1="{left}" y1="{pad_top}" x2="{left}" y2="{base}" stroke="#888"/>',
        f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#888"/>',
    ]
    for t in ticks:
        y = y_of(t)
        parts.append(
            f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 7}" y="{y + 4:.1f}" class="val ytick" text-anchor="end">{t:,}</text>'
        )
    parts.append(
        f'<text transform="translate(13 {pad_top + plot_h / 2:.1f}) rotate(-90)" class=lbl '
        f'text-anchor="middle">documents</text>'
    )
    bw = plot_w / n if n else plot_w
    for i, c in enumerate(counts):
        y = y_of(c)
        x = left + i * bw
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{base - y:.1f}" '
            f'fill="#3b6ea8"><title>{i / n:.2f}–{(i + 1) / n:.2f}: {c:,} documents</title></rect>'
        )
        if c:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{y - 3:.1f}" class="val count" text-anchor="middle">{c:,}</text>'
            )
    for m in marks:
        x = left + m * plot_w
        parts.append(
            f'<line x1="{x:.1f}" y1="{pad_top}" x2="{x:.1f}" y2="{base}" stroke="#c0392b" stroke-dasharray="4 3"/>'
            f'<text x="{x + 3:.1f}" y="{pad_top - 6}" class=val fill="#c0392b">{m:g}</text>'
        )
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left + t * plot_w:.1f}" y="{base + 16}" class=val text-anchor="middle">{t:g}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{base + 36}" class=lbl text-anchor="middle">{e(x_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
