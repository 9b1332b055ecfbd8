"""The funnel: documents, characters and estimated tokens through every stage.

Built on the driver from the per-key sums the pipeline wrote (``_stats.json``)
and the row counts of the files it wrote; the conservation check compares them.
"""

from __future__ import annotations

import json

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from curate.transforms import registry
from curate.transforms.render import fmt_int as _fmt_int
from curate.transforms.render import fmt_pct as _fmt_pct
from curate.transforms.render import size as _size
from curate.transforms.stage import CUT, REPEATS, shell_safe

# Phi recipe reference funnel (documents): raw 1,000M -> dedup 400M ->
# language 200M -> quality>=0.5 20M -> quality>=0.8 5M.  The final mixed set has no
# reference count (None): it is shown measured, beside "no reference".
REFERENCE = [
    ("raw", 1_000_000_000, ["raw"]),
    ("after dedup", 400_000_000, ["semantic_dedup", "near_dedup", "exact_dedup"]),
    ("after language filter", 200_000_000, ["language"]),
    ("quality >= 0.5", 20_000_000, ["quality_low"]),
    ("quality >= 0.8", 5_000_000, ["quality_high"]),
    ("final mixed set", None, ["mixing"]),
]
NO_REFERENCE = "no reference"
PROJECTION_RAW = 1_000_000_000


def _pct(part: int, whole: int):
    return None if not whole else round(100.0 * part / whole, 4)


def build_funnel(
    stats: list,
    ran: list[tuple[str, str]],
    tokens_per_char: float,
    written: dict | None = None,
    input_rows: int | None = None,
    pipeline_written: dict | None = None,
    order: list[str] | None = None,
) -> dict:
    """``stats``: [[stage, kind, reason, docs, chars], ...] from the pipeline;
    ``ran``: (slot, name) of the stages run, in order; ``written``: rows per
    published folder read from the staged files' Parquet footers;
    ``pipeline_written``: the rows the pipeline's writers reported; ``order``: the
    config's stage order (null: the registry's)."""
    ran_by_slot = dict(ran)
    sums: dict[tuple, tuple[int, int]] = {}
    for stage, kind, reason, docs, chars in stats:
        sums[(stage, kind, reason)] = (docs, chars)

    def get(stage, kind, reason=""):
        return sums.get((stage, kind, reason), (0, 0))

    raw_docs, raw_chars = get("raw", "kept")
    stages, problems = [], []
    previous, previous_chars = raw_docs, raw_chars
    for spec, (slot, default_name) in ((spec, slot) for spec in registry.specs(order) for slot in spec.slots):
        if slot not in ran_by_slot:
            stages.append({"name": default_name, "slot": slot, "status": "not run"})
            continue
        name = ran_by_slot[slot]
        in_d, in_c = get(name, "in")
        kept_d, kept_c = get(name, "kept")
        by_reason = {
            reason: _size(d, c, tokens_per_char)
            for (s, kind, reason), (d, c) in sorted(sums.items())
            if s == name and kind == "rejected"
        }
        rej_d = sum(r["docs"] for r in by_reason.values())
        rej_c = sum(r["chars"] for r in by_reason.values())
        cut_d, cut_c = get(name, CUT)  # characters cut out of kept documents (decontamination)
        if in_d != kept_d + rej_d or in_c != kept_c + rej_c + cut_c:
            problems.append(f"{name}: in {in_d} docs != kept {kept_d} + rejected {rej_d}")
        if in_d != previous:
            problems.append(f"{name}: in {in_d} docs != {previous} docs left by the previous stage")
        extra: dict = {}
        if cut_d or cut_c:
            extra["cut"] = _size(cut_d, cut_c, tokens_per_char)
        repeats = get(name, REPEATS)
        if repeats != (0, 0):
            extra["repeats"] = _size(*repeats, tokens_per_char)
        own = {(kind, group): v for (s, kind, group), v in sums.items() if s == name}
        entry = {"name": name, "in": _size(in_d, in_c, tokens_per_char), "rejected_by_reason": by_reason}
        for stat in spec.stats:
            extra.update(stat.funnel(own, entry, tokens_per_char))
        stages.append(
            {
                **extra,
                "name": name,
                "slot": slot,
                "status": "run",
                "in": _size(in_d, in_c, tokens_per_char),
                "kept": _size(kept_d, kept_c, tokens_per_char),
                "rejected": _size(rej_d, rej_c, tokens_per_char),
                "rejected_by_reason": by_reason,
                "pct_of_previous": _pct(kept_d, in_d),
                "pct_of_raw": _pct(kept_d, raw_docs),
                "projected_per_1B_raw": None if not raw_docs else int(round(PROJECTION_RAW * kept_d / raw_docs)),
            }
        )
        previous, previous_chars = kept_d, kept_c

    if input_rows is not None and input_rows != raw_docs:
        problems.append(f"raw: {raw_docs} docs read != {input_rows} rows in the input files")
    if written is not None:
        final = previous + sum(s.get("repeats", {}).get("docs", 0) for s in stages)
        if written.get("kept", 0) != final:
            problems.append(f"output: {written.get('kept', 0)} kept rows written != {final} kept (with repeats)")
        for s in stages:
            if s["status"] == "run":
                w = written.get(f"rejects/{shell_safe(s['name'])}", 0) + written.get(f"routed/{s['name']}", 0)
                if w != s["rejected"]["docs"]:
                    problems.append(f"output: {w} reject rows written for {s['name']} != {s['rejected']['docs']}")
        published = (
            written.get("kept", 0)
            - sum(s.get("repeats", {}).get("docs", 0) for s in stages)
            + sum(n for label, n in written.items() if label.startswith(("rejects/", "routed/")))
        )
        if input_rows is not None and published != input_rows:
            problems.append(
                f"output: the files to publish hold {published} distinct documents (kept, rejects, "
                f"routed) != {input_rows} rows in the input files"
            )
    for label, n in sorted((pipeline_written or {}).items()):
        if label.startswith("cuts/"):
            continue
        on_disk = (written or {}).get(label, 0)
        if on_disk != n:
            problems.append(f"output: the pipeline wrote {n} rows to {label}, the staged files hold {on_disk}")

    run_stages = {s["slot"]: s for s in stages if s["status"] == "run"}
    reference = []
    for label, ref_docs, measured_from in REFERENCE:
        row = {
            "step": label,
            "reference_docs": ref_docs,
            "reference_pct_of_raw": None if ref_docs is None else _pct(ref_docs, REFERENCE[0][1]),
            "measured_stage": None,
            "measured_docs": None,
            "measured_pct_of_raw": None,
            "projected_per_1B_raw": None,
        }
        if measured_from == ["raw"]:
            row.update(
                measured_stage="raw",
                measured_docs=raw_docs,
                measured_pct_of_raw=100.0 if raw_docs else None,
                projected_per_1B_raw=PROJECTION_RAW if raw_docs else None,
            )
        else:
            for name in measured_from:
                if name in run_stages:
                    s = run_stages[name]
                    row.update(
                        measured_stage=s.get("name", name),  # the name the funnel's rows show ("quality>=0.5")
                        measured_docs=s["kept"]["docs"],
                        measured_pct_of_raw=s["pct_of_raw"],
                        projected_per_1B_raw=s["projected_per_1B_raw"],
                    )
                    break
        reference.append(row)

    return {
        "tokens_per_char": tokens_per_char,
        "raw": _size(raw_docs, raw_chars, tokens_per_char),
        "stages": stages,
        "final": _size(previous, previous_chars, tokens_per_char),
        "reference_phi": reference,
        "written_rows": written or {},
        "conservation": {"ok": not problems, "problems": problems},
    }


def table_notes(funnel: dict) -> list[str]:
    """What the funnel table's document counts do not show, one sentence a stage: text cut out of
    kept documents, kept documents written more than once, dropped documents routed to a folder
    of their own instead of ``rejects/``.  Said under the table in funnel.md and report.html."""
    notes = []
    written = funnel.get("written_rows", {})
    for s in funnel["stages"]:
        if s["status"] != "run":
            continue
        name = s["name"]
        cut = s.get("cut", {})
        if cut.get("docs"):
            where = "; the removed text is in `cuts/decontamination/`" if name == "decontamination" else ""
            notes.append(
                f"{name} removed {cut['chars']:,} characters from {cut['docs']:,} "
                f"document{'s' if cut['docs'] != 1 else ''} it kept (their counts "
                f"stay in its kept column, their characters leave it){where}."
            )
        repeats = s.get("repeats", {}).get("docs", 0)
        if repeats:
            kept = s["kept"]["docs"]
            notes.append(
                f"{name} wrote its {kept:,} kept documents as {kept + repeats:,} rows: {repeats:,} more copies "
                "of documents sampled more than once (column `epoch`); the table counts each document once."
            )
        routed = written.get(f"routed/{name}", 0)
        if routed:
            notes.append(
                f"{name}: {routed:,} of its {s['rejected']['docs']:,} dropped documents were routed to "
                "`by_language/<lang>/` (documents in other languages), not to `rejects/`."
            )
    return notes


def render_markdown(funnel: dict) -> str:
    raw = funnel["raw"]
    lines = [
        "# Funnel",
        "",
        f"Tokens are estimated at {funnel['tokens_per_char']} tokens per character.",
        "",
        *(
            ["The input holds no documents: every stage ran on nothing; `kept/` holds one empty shard.", ""]
            if not raw["docs"]
            else []
        ),
        "| stage | in | kept | dropped | % of previous | % of raw | chars kept | est. tokens kept | per 1B raw |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| raw | | {_fmt_int(raw['docs'])} | | | {'100.00%' if raw['docs'] else '-'} | {_fmt_int(raw['chars'])} | {_fmt_int(raw['tokens_est'])} | {_fmt_int(PROJECTION_RAW if raw['docs'] else None)} |",
    ]
    for s in funnel["stages"]:
        if s["status"] != "run":
            lines.append(f"| {s['name']} | not run | | | | | | | |")
            continue
        lines.append(
            f"| {s['name']} | {_fmt_int(s['in']['docs'])} | {_fmt_int(s['kept']['docs'])} | "
            f"{_fmt_int(s['rejected']['docs'])} | {_fmt_pct(s['pct_of_previous'])} | {_fmt_pct(s['pct_of_raw'])} | "
            f"{_fmt_int(s['kept']['chars'])} | {_fmt_int(s['kept']['tokens_est'])} | {_fmt_int(s['projected_per_1B_raw'])} |"
        )
    for note in table_notes(funnel):
        lines += ["", note]
    lines += [
        "",
        "## Dropped, by reason",
        "",
        "| stage | reason | docs | chars | est. tokens |",
        "|---|---|---:|---:|---:|",
    ]
    for s in funnel["stages"]:
        if s["status"] != "run":
            continue
        for reason, size in s["rejected_by_reason"].items():
            lines.append(
                f"| {s['name']} | {reason} | {_fmt_int(size['docs'])} | {_fmt_int(size['chars'])} | {_fmt_int(size['tokens_est'])} |"
            )
    lines += stat_sections(funnel, "markdown")
    lines += [
        "",
        "## Beside the Phi reference funnel",
        "",
        "| step | reference docs | reference % of raw | measured after | measured docs | measured % of raw | projected per 1B raw |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in funnel["reference_phi"]:
        lines.append(
            f"| {r['step']} | {_fmt_int(r['reference_docs']) if r['reference_docs'] is not None else NO_REFERENCE} | "
            f"{_fmt_pct(r['reference_pct_of_raw'])} | "
            f"{r['measured_stage'] or 'not run'} | {_fmt_int(r['measured_docs'])} | {_fmt_pct(r['measured_pct_of_raw'])} | "
            f"{_fmt_int(r['projected_per_1B_raw'])} |"
        )
    if funnel.get("skipped_shards"):
        lines += ["", "## Skipped shards (--skip-bad-shards)", ""]
        lines += [f"- {s['reason']}" for s in funnel["skipped_shards"]]
    cons = funnel["conservation"]
    lines += [
        "",
        "Conservation check: "
        + (
            "passed (every document is kept or rejected with a reason)."
            if cons["ok"]
            else "FAILED: " + "; ".join(cons["problems"])
        ),
        "",
    ]
    return "\n".join(lines)


def stat_sections(funnel: dict, how: str, samples: dict | None = None) -> list:
    """The sections each run stage's declared stats render to, in their declared order."""
    sections = []
    for spec in registry.specs():
        slots = dict(spec.slots)
        for position, entry in enumerate(funnel["stages"]):
            if entry["status"] != "run" or entry["slot"] not in slots:
                continue
            for stat in spec.stats:
                if how == "markdown":
                    sections.append((stat.markdown_order, position, stat.markdown(entry, funnel)))
                else:
                    sections.append((stat.html_order, position, stat.html(entry, funnel, samples or {})))
    return [line for _, _, part in sorted(sections, key=lambda t: (t[0], t[1])) for line in part]


def dumps(funnel: dict) -> str:
    return json.dumps(funnel, indent=2, sort_keys=True) + "\n"


class RunOutputError(ValueError):
    """A finished run's file that is missing or damaged: the message names it."""


def read_run_json(output: str, name: str) -> dict:
    """``funnel.json`` or ``samples.json`` of a finished run, checked to be what a run writes
    (``curate funnel`` and ``curate report`` read them; a half-written or foreign folder
    gets a message naming the file, not a traceback)."""
    path = FileSystems.join(output, name)
    if not FileSystems.exists(path):
        raise RunOutputError(f"{path} not found: is {output} the output of a finished `curate run`?")
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RunOutputError(f"{path}: not readable JSON ({exc})") from exc
    shape_ok = isinstance(data, dict) and (name != "funnel.json" or {"raw", "stages", "tokens_per_char"} <= set(data))
    if not shape_ok:
        raise RunOutputError(f"{path}: not a curate {name} (edited, or written by something else)")
    return data
