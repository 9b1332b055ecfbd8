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


def histogram(counts: list[int], marks=(0.5, 0.8), width: int = 640, height: int = 180) -> str:
    top = max(counts) or 1
    n = len(counts)
    bw = (width - 40) / n
    parts = [f'<svg width="{width}" height="{height + 30}" role="img" aria-label="score histogram">']
    for i, c in enumerate(counts):
        h = (height - 10) * c / top
        parts.append(
            f'<rect x="{30 + i * bw:.1f}" y="{height - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
            f'fill="#3b6ea8"><title>{i / n:.2f}–{(i + 1) / n:.2f}: {c}</title></rect>'
        )
    for m in marks:
        x = 30 + m * (width - 40)
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#c0392b" stroke-dasharray="4 3"/>'
            f'<text x="{x + 3:.1f}" y="12" class=val fill="#c0392b">{m:g}</text>'
        )
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<text x="{30 + t * (width - 40):.1f}" y="{height + 16}" class=val text-anchor="middle">{t:g}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
