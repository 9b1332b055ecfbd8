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

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from curate.pipelines.funnel import NO_REFERENCE, read_run_json, stat_sections, table_notes
from curate.transforms.render import bars as _bars
from curate.transforms.render import e as _e
from curate.transforms.render import n as _n
from curate.transforms.render import pct as _pct


def _funnel_chart(funnel: dict) -> str:
    """Measured % of raw per stage beside the Phi reference, log-free linear bars.  A step
    with no reference (the final mixed set) shows its measured bar beside "no reference"."""
    rows = []
    for r in funnel["reference_phi"]:
        ref = r["reference_pct_of_raw"]
        if r["reference_docs"] is None:
            rows.append((f"{r['step']} (reference)", None, NO_REFERENCE))
        else:
            rows.append((f"{r['step']} (reference)", ref or 0, _pct(ref)))
        measured = r["measured_pct_of_raw"]
        rows.append(
            (
                f"{r['step']} (measured)",
                measured or 0,
                "not run" if measured is None else f"{_pct(measured)} → {_n(r['projected_per_1B_raw'])} per 1B raw",
            )
        )
    width, label_width, h = 760, 230, 22
    parts = [f'<svg width="{width}" height="{h * len(rows) + 4}" role="img" aria-label="funnel">']
    for i, (label, value, text) in enumerate(rows):
        y = i * h + 2
        color = "#b9c4d0" if "reference" in label else "#2f7d4f"
        w = 0 if value is None else max((width - label_width - 250) * value / 100, 1)
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" class=lbl>{_e(label)}</text>'
            + (f'<rect x="{label_width}" y="{y + 3}" width="{w:.1f}" height="{h - 6}" fill="{color}"/>' if w else "")
            + f'<text x="{label_width + w + 6:.1f}" y="{y + 15}" class=val>{_e(text)}</text>'
        )
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
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>curate funnel</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Curation funnel</h1>",
        f"<p>{raw['docs']:,} raw documents ({raw['chars']:,} characters, ~{raw['tokens_est']:,} tokens at "
        f"{funnel['tokens_per_char']} tokens/char) → {funnel['final']['docs']:,} kept. Conservation check: "
        + (
            "<span class=ok>passed</span>"
            if cons["ok"]
            else f"<span class=bad>FAILED</span>: {_e('; '.join(cons['problems']))}"
        )
        + "</p>",
        *(
            [
                "<p><b>The input holds no documents</b>: every stage ran on nothing, and <code>kept/</code> holds "
                "one empty shard with the output schema.</p>"
            ]
            if not raw["docs"]
            else []
        ),
        "<h2>Funnel beside the Phi reference</h2>",
        _funnel_chart(funnel),
        "<table><tr><th>stage</th><th>in</th><th>kept</th><th>dropped</th><th>% of previous</th><th>% of raw</th>"
        "<th>est. tokens kept</th><th>per 1B raw</th></tr>",
    ]
    for s in funnel["stages"]:
        if s["status"] != "run":
            out.append(f"<tr><td>{_e(s['name'])}</td><td colspan=7 class=muted>not run</td></tr>")
            continue
        out.append(
            f"<tr><td>{_e(s['name'])}</td><td>{s['in']['docs']:,}</td><td>{s['kept']['docs']:,}</td>"
            f"<td>{s['rejected']['docs']:,}</td><td>{_pct(s['pct_of_previous'])}</td><td>{_pct(s['pct_of_raw'])}</td>"
            f"<td>{s['kept']['tokens_est']:,}</td><td>{_n(s['projected_per_1B_raw'])}</td></tr>"
        )
    out.append("</table>")
    out += [f"<p class=muted>{_e(note).replace('`', '')}</p>" for note in table_notes(funnel)]

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
                meta = ", ".join(
                    f"{k}={_e(round(v, 3) if isinstance(v, float) else v)}"
                    for k, v in sorted(d.items())
                    if k not in ("id", "text", "chars")
                )
                out.append(
                    f"<div><b>{_e(d['id'])}</b> <span class=muted>({d['chars']:,} chars"
                    f"{'; ' + meta if meta else ''})</span><pre>{_e(d['text'])}</pre></div>"
                )
            out.append("</details>")

    out += stat_sections(funnel, "html", samples)
    out.append(
        "<p class=muted>Samples show document text escaped and cut to 400 characters. Data licences: see "
        "the input's own terms.</p></body></html>"
    )
    return "\n".join(out)


def write_report(directory: str, funnel: dict, samples: dict) -> None:
    with FileSystems.create(
        FileSystems.join(directory, "report.html"), compression_type=CompressionTypes.UNCOMPRESSED
    ) as handle:
        handle.write(render_html(funnel, samples).encode("utf-8"))


def regenerate(directory: str) -> str:
    """report.html again from a finished run's funnel.json and samples.json (both required: a
    report without its samples would drop every sample section without saying so)."""
    funnel = read_run_json(directory, "funnel.json")
    samples = read_run_json(directory, "samples.json")
    write_report(directory, funnel, samples)
    return FileSystems.join(directory, "report.html")
