"""report.html rendered by a real headless Chromium: no script errors, the stages shown,
document text displayed as text."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import CURATE, run_pipeline, write_parquet

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
EVIL = "<script>document.title='pwned';alert(1)</script><img src=x onerror=alert(2)> CLICK HERE lol"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    import pyarrow.parquet as pq

    from curate.pipelines.build import sample_corpus_path

    root = tmp_path_factory.mktemp("report")
    rows = pq.read_table(sample_corpus_path(), columns=["id", "text"]).to_pylist()
    rows.append({"id": "a-evil", "text": EVIL * 3})  # English spam: dropped, first by id among its reason
    write_parquet(root / "in.parquet", rows)
    run_pipeline([root / "in.parquet"], root / "out")
    return root / "out"


def _chromium(args, tmp_path):
    if not CHROMIUM:
        pytest.skip("Chromium not installed (Debian package `chromium`; .ci/run installs it)")
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_renders_in_chromium_without_script_errors(report_dir, tmp_path):
    page = (report_dir / "report.html").as_uri()
    dom = _chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", page], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr
    for name in (
        "input_check",
        "exact_dedup",
        "near_dedup",
        "language",
        "quality&gt;=0.5",
        "quality&gt;=0.8",
        "decontamination",
        "mixing",
        "Funnel beside the Phi reference",
        "Educational-quality scores",
        "Near-duplicate clusters",
        "Benchmark contamination",
        "Mixture: achieved versus target",
        "final mixed set (measured)",
        "no reference",
        "edu_score histogram",
    ):
        assert name in dom.stdout, name
    assert "<title>curate funnel</title>" in dom.stdout  # the title was not rewritten by a script
    shot = tmp_path / "report.png"
    done = _chromium(["--window-size=1200,2400", f"--screenshot={shot}", page], tmp_path)
    assert done.returncode == 0 and shot.stat().st_size > 20_000


def test_script_in_a_document_is_shown_as_text(report_dir):
    page = (report_dir / "report.html").read_text()
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;;alert(1)&lt;/script&gt;" in page
    assert "a-evil" in page


def test_curate_report_regenerates_the_page(report_dir):
    before = (report_dir / "report.html").read_bytes()
    (report_dir / "report.html").unlink()
    proc = subprocess.run([CURATE, "report", str(report_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (report_dir / "report.html").read_bytes() == before


@pytest.mark.parametrize(
    "damage,needle",
    [
        ({"samples.json": "[1,2"}, "samples.json: not readable JSON"),
        ({"funnel.json": '"hello"'}, "funnel.json: not a curate funnel.json"),
        ({"funnel.json": "{}"}, "funnel.json: not a curate funnel.json"),
        ({"funnel.json": '{"raw": '}, "funnel.json: not readable JSON"),
        ({"samples.json": None}, "samples.json not found"),
    ],
)
def test_report_and_funnel_name_the_damaged_file(report_dir, tmp_path, damage, needle):
    """A half-written or edited run output: exit 2 naming the file, never a traceback, and no
    report silently rewritten without its samples."""
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    for name in ("funnel.json", "samples.json"):
        shutil.copy(report_dir / name, out / name)
    for name, text in damage.items():
        (out / name).unlink()
        if text is not None:
            (out / name).write_text(text)
    commands = [["report"]] + ([["funnel"]] if "funnel.json" in damage else [])
    for command in commands:
        proc = subprocess.run([CURATE, *command, str(out)], capture_output=True, text=True)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (out / "report.html").exists()


def test_samples_are_the_smallest_ids_of_each_reason_over_all_batches_and_files(tmp_path):
    """Chosen in the pipeline from many small batches written to three reject files:
    each reason's samples are its five smallest (id, text) among all its rejects."""
    import json

    import pyarrow.parquet as pq
    from conftest import only_stages, read_rejects

    from curate.pipelines.build import sample_corpus_path

    rows = pq.read_table(sample_corpus_path(), columns=["id", "text"]).to_pylist()[::-1]  # smallest ids last
    rows += [{"id": "dup", "text": f"copy {i} of a document whose id repeats"} for i in (5, 3, 6, 1, 4, 2, 0)]
    rows += [{"id": None, "text": "no id"}, {"id": "blank", "text": "   "}]
    config = {**only_stages("exact_dedup", "language"), "input": {"batch_size": 8}, "output": {"reject_shards": 3}}
    run_pipeline([write_parquet(tmp_path / "in.parquet", rows)], tmp_path / "out", config)
    samples = json.loads((tmp_path / "out" / "samples.json").read_text())

    expected: dict = {}
    for stage, table in read_rejects(tmp_path / "out").items():
        for row in sorted(table.to_pylist(), key=lambda r: (r["id"] is not None, r["id"] or "", r["text"] or "")):
            picked = expected.setdefault(stage, {}).setdefault(row["reason"], [])
            if len(picked) < 5:
                text = row["text"] or ""
                picked.append((row["id"], len(text), text[:400] + ("…" if len(text) > 400 else "")))
    got = {
        stage: {reason: [(s["id"], s["chars"], s["text"]) for s in docs] for reason, docs in by_reason.items()}
        for stage, by_reason in samples.items()
    }
    assert got == expected
    assert [s[2] for s in got["input_check"]["duplicate_id"]] == [
        f"copy {i} of a document whose id repeats" for i in range(5)
    ]
    assert len(got["language"]) >= 3 and any(len(v) == 5 for v in got["language"].values())


def _svg(page: str, label: str) -> str:
    start = page.index(f'aria-label="{label}"')
    return page[start : page.index("</svg>", start)]


def test_histogram_shows_counts_on_the_bars_a_y_axis_and_the_x_label(report_dir):
    import json
    import re

    funnel = json.loads((report_dir / "funnel.json").read_text())
    counts = next(s for s in funnel["stages"] if s.get("score_histogram"))["score_histogram"]
    svg = _svg((report_dir / "report.html").read_text(), "edu_score histogram")
    shown = [int(t.replace(",", "")) for t in re.findall(r'class="val count"[^>]*>([\d,]+)<', svg)]
    assert shown == [c for c in counts if c] and len(shown) >= 3  # every non-empty bar labelled with its count
    ticks = [int(t.replace(",", "")) for t in re.findall(r'class="val ytick"[^>]*>([\d,]+)<', svg)]
    assert ticks[0] == 0 and len(ticks) >= 3 and ticks[-1] >= max(counts) > ticks[-2]
    assert ">documents</text>" in svg and ">edu_score</text>" in svg


def test_histogram_axis_ticks_cover_the_tallest_bar():
    import re

    from curate.transforms.render import histogram

    svg = histogram([0, 3, 0, 1234, 7])
    assert re.findall(r'class="val count"[^>]*>([\d,]+)<', svg) == ["3", "1,234", "7"]
    assert re.findall(r'class="val ytick"[^>]*>([\d,]+)<', svg) == ["0", "500", "1,000", "1,500"]


def test_mixing_is_in_the_funnel_chart_and_every_run_stage_in_the_table(report_dir):
    import json

    funnel = json.loads((report_dir / "funnel.json").read_text())
    mixing = next(s for s in funnel["stages"] if s["name"] == "mixing")
    final = funnel["reference_phi"][-1]
    assert final["step"] == "final mixed set" and final["reference_docs"] is None
    assert final["measured_stage"] == "mixing" and final["measured_docs"] == mixing["kept"]["docs"]
    page = (report_dir / "report.html").read_text()
    chart = _svg(page, "funnel")
    assert ">final mixed set (reference)</text>" in chart and ">no reference</text>" in chart
    assert ">final mixed set (measured)</text>" in chart
    assert f">{mixing['pct_of_raw']:.2f}% → " in chart
    table = page[page.index("<th>stage</th>") : page.index("</table>", page.index("<th>stage</th>"))]
    for s in funnel["stages"]:
        if s["status"] == "run":
            assert f"<tr><td>{s['name'].replace('>', '&gt;')}</td><td>{s['in']['docs']:,}</td>" in table, s["name"]


def test_mixture_rows_explain_themselves(report_dir):
    import json

    mixture = json.loads((report_dir / "mixture.json").read_text())
    page = (report_dir / "report.html").read_text()
    section = page[page.index("Mixture: achieved versus target") :]
    assert mixture["infeasible"]  # the input has no source column: all is `other`, the other sources have nothing
    for name, v in mixture["sources"].items():
        row = section[section.index(f"<tr><td>{name}</td>") :].split("</tr>")[0]
        assert f"<td>{v['available_tokens']:,}</td>" in row and f"= {v['target_tokens']:,}</td>" in row
        assert f"<td>{v['achieved_tokens']:,} (" in row
        if not v["feasible"]:
            assert "infeasible: no documents of this source were left after filtering" in row
            assert "went to the other sources by weight" in row
