"""End-to-end checks of the foundation on the DirectRunner with real files."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CURATE, REAL_DOCS_CONFIG, only_stages, read_dir, read_rejects, run_pipeline, write_parquet

from curate.pipelines.build import sample_corpus_path
from curate.transforms.stage import shell_safe


def _all_output_ids(output: Path) -> Counter:
    ids = Counter()
    kept = read_dir(output / "kept")
    if kept is not None:
        epochs = kept.column("epoch").to_pylist() if "epoch" in kept.column_names else [0] * kept.num_rows
        # a document repeated by the mixer appears once per epoch; it is one input row
        ids.update(i for i, e in zip(kept.column("id").to_pylist(), epochs) if e == 0)
    for table in read_rejects(output).values():
        ids.update(table.column("id").to_pylist())
    return ids


def _assert_conserved(input_ids: list[str], output: Path, funnel: dict):
    out_ids = _all_output_ids(output)
    assert out_ids == Counter(input_ids), "every input row must be kept or rejected exactly once"
    assert funnel["conservation"]["ok"], funnel["conservation"]["problems"]
    for stage in funnel["stages"]:
        if stage["status"] == "run":
            assert stage["in"]["docs"] == stage["kept"]["docs"] + stage["rejected"]["docs"]
            cut = stage.get("cut", {}).get("chars", 0)  # text cut out by the decontamination `cut` policy
            assert stage["in"]["chars"] == stage["kept"]["chars"] + stage["rejected"]["chars"] + cut


def test_sample_corpus_conservation_and_funnel_matches_files(tmp_path):
    out = tmp_path / "out"
    result = run_pipeline([sample_corpus_path()], out)
    input_ids = pq.read_table(sample_corpus_path(), columns=["id"]).column("id").to_pylist()
    _assert_conserved(input_ids, out, result.funnel)

    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel == json.loads(json.dumps(result.funnel))
    kept = read_dir(out / "kept")
    rejects = read_rejects(out)
    run_stages = [s for s in funnel["stages"] if s["status"] == "run"]
    assert funnel["raw"]["docs"] == len(input_ids)
    repeats = sum(s.get("repeats", {}).get("docs", 0) for s in run_stages)
    assert run_stages[-1]["kept"]["docs"] + repeats == kept.num_rows
    for stage in run_stages:
        table = rejects.get(shell_safe(stage["name"]))  # rejects/<stage> folders are shell-safe
        rows = 0 if table is None else table.num_rows
        assert stage["rejected"]["docs"] == rows
        if table is not None:
            assert set(table.column("stage").to_pylist()) == {stage["name"]}
            assert dict(Counter(table.column("reason").to_pylist())) == {
                r: v["docs"] for r, v in stage["rejected_by_reason"].items()
            }
    # characters in the funnel are the characters of the written rows
    repeat_chars = sum(s.get("repeats", {}).get("chars", 0) for s in run_stages)
    assert run_stages[-1]["kept"]["chars"] + repeat_chars == sum(len(t) for t in kept.column("text").to_pylist())
    # stages not built are reported as not run, with no numbers
    not_run = [s for s in funnel["stages"] if s["status"] == "not run"]
    assert all(set(s) == {"name", "slot", "status"} for s in not_run)
    assert (out / "_SUCCESS").exists() and not list(out.glob("_tmp-*"))


def test_real_documents_conservation(tmp_path, real_docs_path):
    out = tmp_path / "out"
    result = run_pipeline([real_docs_path], out, REAL_DOCS_CONFIG)
    input_ids = pq.read_table(real_docs_path, columns=["id"]).column("id").to_pylist()
    _assert_conserved(input_ids, out, result.funnel)
    assert result.funnel["raw"]["docs"] == len(input_ids) > 2000


@pytest.mark.parametrize("join", ["side_input", "shuffle"])
def test_exact_dedup_on_planted_duplicates(tmp_path, join):
    base = "The mitochondria is the powerhouse of the cell, it makes ATP."
    other = "Photosynthesis turns light into chemical energy in plants."
    rows = [
        {"id": "d3", "text": base},
        {"id": "d1", "text": base.upper()},  # case variant
        {"id": "d7", "text": "  " + base.replace(" ", "\n\t ")},  # whitespace variant
        {"id": "d5", "text": base.replace("T", "\uff34")},  # fullwidth letters (NFKC)
        {"id": "d2", "text": other},
        {"id": "d9", "text": other + " Really."},  # different text: kept
        {"id": "d4", "text": other},
    ]
    inp = write_parquet(tmp_path / "in" / "a.parquet", rows[:4])
    inp2 = write_parquet(tmp_path / "in" / "b.parquet", rows[4:])
    out = tmp_path / "out"
    run_pipeline([tmp_path / "in" / "*.parquet"], out, only_stages("exact_dedup", exact_dedup={"join": join}))
    kept = sorted(read_dir(out / "kept").column("id").to_pylist())
    assert kept == ["d1", "d2", "d9"]
    rej = read_rejects(out)["exact_dedup"].to_pylist()
    assert {r["id"]: r["duplicate_of"] for r in rej} == {"d3": "d1", "d7": "d1", "d5": "d1", "d4": "d2"}
    assert {r["reason"] for r in rej} == {"exact_duplicate"}
    assert inp.exists() and inp2.exists()


def test_extra_columns_pass_through_untouched(tmp_path):
    schema = pa.schema(
        [
            ("doc_id", pa.int64()),
            ("body", pa.string()),
            ("score", pa.float64()),
            ("tags", pa.list_(pa.string())),
            ("meta", pa.struct([("url", pa.string())])),
        ]
    )
    rows = [
        {
            "doc_id": i,
            "body": f"document number {i} with some words",
            "score": i / 10,
            "tags": [f"t{i}", "x"],
            "meta": {"url": f"http://e.test/{i}"},
        }
        for i in range(50)
    ]
    rows.append({"doc_id": 99, "body": "DOCUMENT NUMBER 3 WITH SOME WORDS", "score": 9.9, "tags": [], "meta": None})
    write_parquet(tmp_path / "in.parquet", rows, schema)
    out = tmp_path / "out"
    run_pipeline(
        [tmp_path / "in.parquet"],
        out,
        {"input": {"id_column": "doc_id", "text_column": "body"}, **only_stages("exact_dedup")},
    )
    kept = read_dir(out / "kept")
    assert kept.column_names == ["doc_id", "body", "score", "tags", "meta"]
    assert kept.schema.field("tags").type == pa.list_(pa.string())
    by_id = {r["doc_id"]: r for r in kept.to_pylist()}
    assert len(by_id) == 50
    for row in rows[:50]:
        got = by_id[str(row["doc_id"])]  # integer ids are carried as strings
        assert (got["body"], got["score"], got["tags"], got["meta"]) == (
            row["body"],
            row["score"],
            row["tags"],
            row["meta"],
        )
    rej = read_rejects(out)["exact_dedup"].to_pylist()
    assert [(r["doc_id"], r["duplicate_of"], r["score"]) for r in rej] == [("99", "3", 9.9)]


def test_same_input_gives_byte_identical_output(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_pipeline([sample_corpus_path()], a)
    run_pipeline([sample_corpus_path()], b)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.parquet")) and files_a
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "funnel.json").read_bytes() == (b / "funnel.json").read_bytes()


def _curate(*args, cwd=None):
    return subprocess.run(
        [CURATE, *args], capture_output=True, text=True, cwd=cwd or Path(__file__).parent, timeout=300
    )


def test_cli_run_then_funnel_reproduces_table(tmp_path):
    proc = _curate("run", "--output", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "| exact_dedup |" in proc.stdout and "Conservation check: passed" in proc.stdout
    funnel_md = (tmp_path / "out" / "funnel.md").read_text()
    again = _curate("funnel", str(tmp_path / "out"))
    assert again.returncode == 0
    assert again.stdout.strip() == funnel_md.strip() == proc.stdout.strip()
    # a second run refuses to overwrite, exit 2, names the folder
    refused = _curate("run", "--output", str(tmp_path / "out"))
    assert refused.returncode == 2 and str(tmp_path / "out") in refused.stderr and "--overwrite" in refused.stderr
    assert _curate("run", "--output", str(tmp_path / "out"), "--overwrite").returncode == 0


def test_cli_default_output_is_cwd_out(tmp_path):
    proc = _curate("run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "funnel.json").exists() and list((tmp_path / "out" / "kept").glob("*.parquet"))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--input", "/nonexistent/dir/*.parquet"], "matches no files"),
        (["--config", "/nonexistent.yaml"], "not found"),
    ],
)
def test_cli_whole_input_errors_exit_2(tmp_path, args, needle):
    proc = _curate("run", "--output", str(tmp_path / "out"), *args)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_text_column_names_the_file(tmp_path):
    bad = write_parquet(tmp_path / "bad.parquet", [{"id": "a", "content": "x"}])
    proc = _curate("run", "--input", str(bad), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "'text'" in proc.stderr


def test_added_column_clash_is_a_clear_error(tmp_path, real_docs_path):
    proc = _curate("run", "--input", str(real_docs_path), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2 and "'lang'" in proc.stderr and "stages.language.output_column" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
    # a column with no config key to rename it: the message names the stage and reads as a sentence
    from curate.transforms.stage import ColumnClashError, append_fields

    with pytest.raises(ColumnClashError) as err:
        append_fields(pa.schema([("edu_score", pa.float32())]), [pa.field("edu_score", pa.float32())], stage="quality")
    assert str(err.value) == (
        "input column 'edu_score' clashes with a column the quality stage adds; rename it in the input"
    )


def test_stable_order_sorts_by_id_and_text_and_breaks_ties_by_the_whole_row():
    """The writers' row order (what makes shards byte-identical on any runner): by id,
    then text, then the other sortable columns, nulls first, rows equal in all of
    those by their JSON; whatever order they came in."""
    import json
    import random

    from curate.transforms.io import stable_order
    from curate.transforms.stage import Columns

    rows = [
        {"id": i, "text": t, "x": x, "tags": g}
        for i, t, x, g in [
            ("b", "t", 2, ["p"]),
            ("b", "t", 1, ["q"]),
            ("a", "z", 0, []),
            (None, "t", 5, []),
            (None, "t", 4, []),
            ("c", None, 9, []),
            ("c", None, 3, []),
            ("b", "s", 7, []),
            ("d", "u", 1, []),
            ("b", "t", 1, ["a"]),
            (None, None, 0, []),
            ("a", "y", 6, []),
            ("e", "v", None, ["z"]),
            ("e", "v", None, ["y"]),
            ("e", "v", 0, []),
        ]
    ]

    def key(r):  # x sorts in Arrow; the list column only through the JSON
        return (
            r["id"] is not None,
            r["id"] or "",
            r["text"] is not None,
            r["text"] or "",
            r["x"] is not None,
            r["x"] or 0,
            json.dumps(r, sort_keys=True),
        )

    expected = sorted(rows, key=key)
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert stable_order(pa.Table.from_pylist(shuffled), Columns()).to_pylist() == expected
    assert stable_order(pa.Table.from_pylist(rows[:1]), Columns()).to_pylist() == rows[:1]


def test_record_batch_coder_round_trips_slices_nulls_and_empty_batches():
    """Batches cross every fusion break through this coder: what comes out must equal what went in."""
    from curate.transforms.stage import RecordBatchCoder

    batch = pa.RecordBatch.from_pydict(
        {
            "id": ["a", None, "c", "d"],
            "text": ["x", "yy", None, "é中"],
            "score": [0.5, None, 1.0, 2.0],
            "tags": [["t"], [], None, ["u", "v"]],
        }
    )
    coder = RecordBatchCoder()
    # a dictionary column adds a message to the stream: more than the preallocated size
    dictionary = pa.RecordBatch.from_pydict({"lang": pa.array(["en", "fr", "en"] * 500).dictionary_encode()})
    big = pa.RecordBatch.from_pydict({"text": ["long text " * 200] * 300, "n": list(range(300))})
    for b in (
        batch,
        batch.slice(1, 2),
        batch.slice(4),
        batch.filter(pa.array([True, False, True, False])),
        dictionary,
        big,
        big.slice(7, 100),
    ):
        decoded = coder.decode(coder.encode(b))
        assert decoded.schema.equals(b.schema) and decoded.to_pylist() == b.to_pylist()


def test_untyped_elements_carrying_batches_are_sized_without_encoding():
    """Beam sizes sampled elements with the fallback coder; ours must not encode a payload
    to measure it (it pickled 2.5 GB per 100k documents), and must still encode as Beam's."""
    import apache_beam as beam
    import numpy as np

    from curate.pipelines.beam import size_estimates
    from curate.pipelines.beam.size_estimates import SizeEstimatingCoder
    from curate.transforms.near_dedup import SetBlock

    class Refuses(beam.coders.PickleCoder):
        def _create_impl(self):
            def refuse(value):
                raise AssertionError(f"encoded {type(value).__name__} to size it")

            return beam.coders.coder_impl.CallbackCoderImpl(refuse, refuse)

    batch = pa.RecordBatch.from_pydict({"id": [f"d{i}" for i in range(1000)], "text": ["word " * 50] * 1000})
    block = SetBlock(pa.array(["a", "b"]), np.arange(5000, dtype=np.uint32), np.array([0, 2000, 5000]))
    payloads = [batch, ("rejected", batch), (3, block), (7, ("bk", block)), (1, [(("a", "b"), ("c",))] * 5000)]
    sizing = SizeEstimatingCoder(Refuses()).get_impl()
    real = SizeEstimatingCoder().get_impl()
    for value in payloads:
        size, observables = sizing.get_estimated_size_and_observables(value)
        encoded = len(real.encode(value))
        assert observables == [] and 0.5 * encoded <= size <= 2 * encoded, (type(value), size, encoded)
    # small per-document tuples are left to Beam's own count, which is exact
    small = (("d1", "bk"), (("-5", "d1"), ("d0", "bk")))
    assert real.get_estimated_size_and_observables(small)[0] == len(real.encode(small))
    size_estimates.install()  # what a run does before it builds its pipeline
    assert isinstance(beam.coders.registry.get_coder(beam.typehints.Any), SizeEstimatingCoder)  # what Beam uses
