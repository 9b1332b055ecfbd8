"""``OUTPUT/report.html``: the funnel a person can look at.

Self-contained (inline CSS and SVG, no script, no network).  Built from
``funnel.json`` and ``samples.json`` of a finished run, so ``curate report DIR``
regenerates it; the samples (a few dropped documents per stage and reason) are
chosen in the pipeline (``transforms.stage.SampleRejects``).  Every piece of
document text is HTML-escaped, and control characters from the data (NUL,
ESC, bidirectional overrides such as U+202E) are shown as ``\u202e`` rather
than passed through: a document must not be able to reorder the report's text.
"""
from __future__ import annotations

import html
import json
import re

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


# C0 and C1 controls (tab and newline excepted), DEL, and the Unicode bidirectional
# marks, embeddings, overrides and isolates (U+061C, U+200E-F, U+202A-E, U+2066-9).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _e(value) -> str:
    return html.escape(visible_controls(str(value)), quote=True)


def _n(value) -> str:
    return "–" if value is None else f"{value:,}"


def _pct(p) -> str:
    return "–" if p is None else f"{p:.2f}%"


def _bars(rows: list[tuple[str, float, str]], width: int = 820, color: str = "#3b6ea8", unit_max: float | None = None,
          label_width: int = 290) -> str:
    """Horizontal bar chart: (label, value, value text)."""
    if not rows:
        return "<p class=muted>nothing to show</p>"
    top = unit_max or max(v for _, v, _ in rows) or 1
    h = 22
    parts = [f'<svg width="{width}" height="{h * len(rows) + 4}" role="img">']
    for i, (label, value, text) in enumerate(rows):
        y = i * h + 2
        w = max(1.0, (width - label_width - 110) * value / top) if value else 0
        parts.append(f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" class=lbl>{_e(label)}</text>'
                     f'<rect x="{label_width}" y="{y + 3}" width="{w:.1f}" height="{h - 6}" fill="{color}"/>'
                     f'<text x="{label_width + w + 6:.1f}" y="{y + 15}" class=val>{_e(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _funnel_chart(funnel: dict) -> str:
    """Measured % of raw per stage beside the Phi reference, log-free linear bars."""
    rows = []
    for r in funnel["reference_phi"]:
        rows.append((f"{r['step']} (reference)", r["reference_pct_of_raw"] or 0, _pct(r["reference_pct_of_raw"])))
        measured = r["measured_pct_of_raw"]
        rows.append((f"{r['step']} (measured)", measured or 0,
                     "not run" if measured is None else f"{_pct(measured)} → {_n(r['projected_per_1B_raw'])} per 1B raw"))
    width, label_width, h = 760, 230, 22
    parts = [f'<svg width="{width}" height="{h * len(rows) + 4}" role="img" aria-label="funnel">']
    for i, (label, value, text) in enumerate(rows):
        y = i * h + 2
        color = "#b9c4d0" if "reference" in label else "#2f7d4f"
        w = (width - label_width - 250) * value / 100
        parts.append(f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" class=lbl>{_e(label)}</text>'
                     f'<rect x="{label_width}" y="{y + 3}" width="{max(w, 1):.1f}" height="{h - 6}" fill="{color}"/>'
                     f'<text x="{label_width + max(w, 1) + 6:.1f}" y="{y + 15}" class=val>{_e(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _histogram(counts: list[int], marks=(0.5, 0.8), width: int = 640, height: int = 180) -> str:
    top = max(counts) or 1
    n = len(counts)
    bw = (width - 40) / n
    parts = [f'<svg width="{width}" height="{height + 30}" role="img" aria-label="score histogram">']
    for i, c in enumerate(counts):
        h = (height - 10) * c / top
        parts.append(f'<rect x="{30 + i * bw:.1f}" y="{height - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                     f'fill="#3b6ea8"><title>{i / n:.2f}–{(i + 1) / n:.2f}: {c}</title></rect>')
    for m in marks:
        x = 30 + m * (width - 40)
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#c0392b" stroke-dasharray="4 3"/>'
                     f'<text x="{x + 3:.1f}" y="12" class=val fill="#c0392b">{m:g}</text>')
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{30 + t * (width - 40):.1f}" y="{height + 16}" class=val text-anchor="middle">{t:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f6f8}td:first-child,th:first-child{text-align:left}
.lbl{font-size:12px;fill:#333}.val{font-size:11px;fill:#555}.muted{color:#888}
.ok{color:#2f7d4f;font-weight:600}.bad{color:#c0392b;font-weight:600}
details{margin:4px 0 8px 0}summary{cursor:pointer}pre{white-space:pre-wrap;background:#f7f7f7;padding:6px;
border:1px solid #eee;max-height:220px;overflow:auto;font-size:12px}
"""


def render_html(funnel: dict, samples: dict) -> str:
    raw = funnel["raw"]
    run = [s for s in funnel["stages"] if s["status"] == "run"]
    cons = funnel["conservation"]
    out = ["<!doctype html><html lang=en><head><meta charset=utf-8><title>curate funnel</title>",
           f"<style>{CSS}</style></head><body>",
           "<h1>Curation funnel</h1>",
           f"<p>{raw['docs']:,} raw documents ({raw['chars']:,} characters, ~{raw['tokens_est']:,} tokens at "
           f"{funnel['tokens_per_char']} tokens/char) → {funnel['final']['docs']:,} kept. Conservation check: "
           + ("<span class=ok>passed</span>" if cons["ok"] else f"<span class=bad>FAILED</span>: {_e('; '.join(cons['problems']))}")
           + "</p>",
           *(["<p><b>The input holds no documents</b>: every stage ran on nothing, and <code>kept/</code> holds "
              "one empty shard with the output schema.</p>"] if not raw["docs"] else []),
           "<h2>Funnel beside the Phi reference</h2>", _funnel_chart(funnel),
           "<table><tr><th>stage</th><th>in</th><th>kept</th><th>dropped</th><th>% of previous</th><th>% of raw</th>"
           "<th>est. tokens kept</th><th>per 1B raw</th></tr>"]
    for s in funnel["stages"]:
        if s["status"] != "run":
            out.append(f"<tr><td>{_e(s['name'])}</td><td colspan=7 class=muted>not run</td></tr>")
            continue
        out.append(f"<tr><td>{_e(s['name'])}</td><td>{s['in']['docs']:,}</td><td>{s['kept']['docs']:,}</td>"
                   f"<td>{s['rejected']['docs']:,}</td><td>{_pct(s['pct_of_previous'])}</td><td>{_pct(s['pct_of_raw'])}</td>"
                   f"<td>{s['kept']['tokens_est']:,}</td><td>{_n(s['projected_per_1B_raw'])}</td></tr>")
    out.append("</table>")

    out.append("<h2>Why documents were dropped</h2>")
    for s in run:
        reasons = sorted(s["rejected_by_reason"].items(), key=lambda kv: -kv[1]["docs"])
        if not reasons:
            continue
        out.append(f"<h3>{_e(s['name'])}</h3>")
        out.append(_bars([(r, v["docs"], f"{v['docs']:,} docs") for r, v in reasons[:25]], color="#a8553b"))
        for reason, _ in reasons:
            docs = samples.get(s["name"], {}).get(reason, [])
            if not docs:
                continue
            out.append(f"<details><summary>{len(docs)} sample(s) dropped as <b>{_e(reason)}</b></summary>")
            for d in docs:
                meta = ", ".join(f"{k}={_e(round(v, 3) if isinstance(v, float) else v)}"
                                 for k, v in sorted(d.items()) if k not in ("id", "text", "chars"))
                out.append(f"<div><b>{_e(d['id'])}</b> <span class=muted>({d['chars']:,} chars"
                           f"{'; ' + meta if meta else ''})</span><pre>{_e(d['text'])}</pre></div>")
            out.append("</details>")

    lang = next((s for s in run if s.get("kept_by_language")), None)
    if lang:
        rows = [(f"{k} (kept)", v["docs"], f"{v['docs']:,}") for k, v in lang["kept_by_language"].items()]
        rows += [(r.split(":", 1)[1] + " (other language)", v["docs"], f"{v['docs']:,}")
                 for r, v in lang["rejected_by_reason"].items() if r.startswith("other_language:")]
        out += ["<h2>Languages</h2>", _bars(sorted(rows, key=lambda r: -r[1]))]
    quality = next((s for s in run if s.get("score_histogram")), None)
    if quality:
        out += ["<h2>Educational-quality scores</h2>",
                "<p>Documents entering the quality stage by <code>edu_score</code>; dashed lines: the 0.5 and 0.8 cuts.</p>",
                _histogram(quality["score_histogram"])]
    dedup = next((s for s in run if s.get("clusters")), None)
    if dedup:
        c = dedup["clusters"]
        out += ["<h2>Near-duplicate clusters</h2>",
                f"<p>{c['count']:,} clusters with {c['documents_in_clusters']:,} documents.</p>",
                _bars([(f"size {k}", v, f"{v:,} clusters") for k, v in c["size_histogram"].items()])]
    contamination = next((s["contamination"] for s in run if s.get("contamination")), None)
    if contamination:
        out += ["<h2>Benchmark contamination</h2>", "<table><tr><th>benchmark</th><th>documents dropped</th>"
                "<th>items found</th></tr>"]
        for bench, b in contamination["benchmarks"].items():
            out.append(f"<tr><td>{_e(bench)}</td><td>{b['docs_dropped']:,}</td><td>{b['items_found']:,}</td></tr>")
        if not contamination["benchmarks"]:
            out.append("<tr><td colspan=3 class=muted>no benchmark item found</td></tr>")
        idx = contamination["index"]
        out.append(f"</table><p class=muted>Index: {idx.get('items', 0):,} items, {idx.get('ngrams', 0):,} n-grams.</p>")
    mixture = funnel.get("mixture")
    if mixture:
        out += ["<h2>Mixture: achieved versus target</h2>"]
        rows = []
        for name, v in mixture["sources"].items():
            rows.append((f"{name} target", 100 * v["target_share"], f"{100 * v['target_share']:.1f}%"))
            rows.append((f"{name} achieved", 100 * v["achieved_share"],
                         f"{100 * v['achieved_share']:.1f}%" + ("" if v["feasible"] else " (infeasible)")))
        out.append(_bars(rows, unit_max=100, color="#6b4fa0"))
        if mixture["infeasible"]:
            out.append(f"<p>Infeasible: {_e(', '.join(mixture['infeasible']))}. {_e(mixture['rule'])}.</p>")
    out.append("<p class=muted>Samples show document text escaped and cut to 400 characters. Data licences: see "
               "the input's own terms.</p></body></html>")
    return "\n".join(out)


def write_report(directory: str, funnel: dict, samples: dict) -> None:
    with FileSystems.create(FileSystems.join(directory, "report.html"),
                            compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(render_html(funnel, samples).encode("utf-8"))


def regenerate(directory: str) -> str:
    def read(name):
        with FileSystems.open(FileSystems.join(directory, name), compression_type=CompressionTypes.UNCOMPRESSED) as h:
            return json.loads(h.read().decode("utf-8"))

    funnel = read("funnel.json")
    samples = read("samples.json") if FileSystems.exists(FileSystems.join(directory, "samples.json")) else {}
    write_report(directory, funnel, samples)
    return FileSystems.join(directory, "report.html")
