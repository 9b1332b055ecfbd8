"""Bad input: every case ends in a recorded reject or a clear error naming the file,
row or key (exit 2, nothing written) -- never a silent loss or a bare traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CURATE, only_stages, read_dir, read_rejects, run_pipeline, write_parquet

GOOD = "A perfectly ordinary English sentence about the weather and the sea, long enough to judge."


def curate(*args, cwd=None):
    return subprocess.run([CURATE, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_clear_error(proc, *needles, out: Path | None = None):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    if out is not None:
        assert not out.exists() or not any(out.iterdir())


def good_shard(path: Path) -> Path:
    return write_parquet(path, [{"id": f"g{i}", "text": f"{GOOD} Number {i}."} for i in range(5)])


# ---- whole-input problems: exit 2 before any output -------------------------------------------


def test_truncated_parquet_names_the_shard(tmp_path):
    shard = good_shard(tmp_path / "in" / "a.parquet")
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    assert_clear_error(
        curate("run", "--input", str(shard), "--output", str(tmp_path / "out")),
        str(shard),
        "not a readable Parquet file",
        out=tmp_path / "out",
    )


def test_not_parquet_names_the_shard(tmp_path):
    shard = tmp_path / "a.parquet"
    shard.write_text("id,text\n1,hello\n")
    assert_clear_error(
        curate("run", "--input", str(shard), "--output", str(tmp_path / "out")),
        str(shard),
        "not a readable Parquet file",
        out=tmp_path / "out",
    )


def test_skip_bad_shards_records_them_in_the_funnel(tmp_path):
    good_shard(tmp_path / "in" / "a.parquet")
    (tmp_path / "in" / "b.parquet").write_text("garbage")
    proc = curate(
        "run", "--input", str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / "out"), "--skip-bad-shards"
    )
    assert proc.returncode == 0, proc.stderr
    funnel_md = (tmp_path / "out" / "funnel.md").read_text()
    assert "Skipped shards" in funnel_md and "b.parquet" in funnel_md


@pytest.mark.parametrize(
    "rows,needle",
    [
        ([{"id": "a", "body": "x"}], "required column 'text' is missing"),
        ([{"doc": "a", "text": "x"}], "required column 'id' is missing"),
        ([{"id": "a", "text": 5}], "column 'text' has type int64, expected string"),
        ([{"id": 1.5, "text": "x"}], "column 'id' has type double"),
    ],
)
def test_missing_or_mistyped_columns(tmp_path, rows, needle):
    shard = write_parquet(tmp_path / "a.parquet", rows)
    assert_clear_error(
        curate("run", "--input", str(shard), "--output", str(tmp_path / "out")),
        str(shard),
        needle,
        out=tmp_path / "out",
    )


def test_binary_text_column(tmp_path):
    shard = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": pa.array([b"\xff\xfe"], pa.binary())}), shard)
    assert_clear_error(
        curate("run", "--input", str(shard), "--output", str(tmp_path / "out")),
        str(shard),
        "expected string",
        out=tmp_path / "out",
    )


def test_shards_with_different_columns(tmp_path):
    good_shard(tmp_path / "in" / "a.parquet")
    write_parquet(tmp_path / "in" / "b.parquet", [{"id": "z", "text": GOOD, "extra": 1}])
    assert_clear_error(
        curate("run", "--input", str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / "out")),
        "b.parquet",
        "differ from the first shard",
        out=tmp_path / "out",
    )


def test_zero_input_files_and_a_glob_matching_nothing(tmp_path):
    assert_clear_error(
        curate("run", "--input", str(tmp_path / "none" / "*.parquet"), "--output", str(tmp_path / "o")),
        "matches no files",
        out=tmp_path / "o",
    )
    (tmp_path / "empty").mkdir()
    assert_clear_error(
        curate("run", "--input", str(tmp_path / "empty" / "*"), "--output", str(tmp_path / "o")),
        "matches no files",
        out=tmp_path / "o",
    )
    assert_clear_error(  # a plain path is not a pattern: it is missing, not unmatched
        curate("run", "--input", str(tmp_path / "missing.parquet"), "--output", str(tmp_path / "o")),
        "missing.parquet' does not exist",
        out=tmp_path / "o",
    )


def test_a_second_input_without_its_own_flag_is_an_error_not_left_out(tmp_path):
    """``--input a.parquet b.parquet`` used to read a.parquet only: b.parquet went on to Beam
    as an option it could not parse, which it drops with a log line."""
    a, b = good_shard(tmp_path / "a.parquet"), good_shard(tmp_path / "b.parquet")
    out = tmp_path / "o"
    assert_clear_error(
        curate("run", "--input", str(a), str(b), "--output", str(out)), str(b), "its own --input", out=out
    )
    assert_clear_error(curate("run", "--input", str(a), "--output", str(out), "extra"), "extra", out=out)
    from curate.pipelines.cli import _stray

    # an option's value given after a space is not stray; a Parquet path or glob always is
    assert _stray(["--runner", "DirectRunner", "--direct_num_workers=2"]) == []
    assert _stray(["--temp_location", "gs://b/tmp", "--job_name=x", "y"]) == ["y"]
    assert _stray(["--save_main_session", "more/*.parquet"]) == ["more/*.parquet"]


def test_unreadable_file(tmp_path):
    folder = tmp_path / "dir.parquet"  # matched by the glob, but a folder: cannot be read as a file
    folder.mkdir()
    (folder / "inner.txt").write_text("x")
    assert_clear_error(
        curate("run", "--input", str(tmp_path / "dir.parquet"), "--output", str(tmp_path / "o")),
        "dir.parquet",
        out=tmp_path / "o",
    )


def test_output_that_exists(tmp_path):
    shard = good_shard(tmp_path / "a.parquet")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("precious")
    assert_clear_error(
        curate("run", "--input", str(shard), "--output", str(tmp_path / "out")),
        "exists and is not empty",
        "--overwrite",
    )
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    "yaml_text,needle",
    [
        ("stages:\n  language:\n    min_scor: 0.5\n", "config key stages.language.min_scor: unknown key"),
        ("input:\n  batch_size: lots\n", "config key input.batch_size: expected an integer"),
        ("stages:\n  quality:\n    low: 1.5\n", "config key stages.quality.low: must be in [0, 1]"),
        ("stages:\n  near_dedup:\n    threshold: 0\n", "config key stages.near_dedup.threshold"),
        ("stages: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_config(tmp_path, yaml_text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    shard = good_shard(tmp_path / "a.parquet")
    assert_clear_error(
        curate("run", "--config", str(cfg), "--input", str(shard), "--output", str(tmp_path / "o")),
        needle,
        str(cfg),
        out=tmp_path / "o",
    )


def test_missing_model_files(tmp_path):
    shard = good_shard(tmp_path / "a.parquet")
    for section, key, needle in (("language", "model_path", "not found"), ("quality", "model_dir", "not found")):
        cfg = tmp_path / f"{section}.yaml"
        cfg.write_text(f"stages:\n  {section}:\n    {key}: {tmp_path / 'nope.bin'}\n")
        assert_clear_error(
            curate("run", "--config", str(cfg), "--input", str(shard), "--output", str(tmp_path / "o")),
            needle,
            "nope.bin",
            out=tmp_path / "o",
        )


def test_benchmark_file_in_the_wrong_format(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"prompt": "only a prompt"}\n')
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"stages:\n  decontamination:\n    benchmarks:\n      - name: b\n        format: gsm8k\n        path: {bench}\n"
    )
    shard = good_shard(tmp_path / "a.parquet")
    assert_clear_error(
        curate("run", "--config", str(cfg), "--input", str(shard), "--output", str(tmp_path / "o")),
        str(bench),
        "line 1",
        "question",
        out=tmp_path / "o",
    )


@pytest.mark.parametrize("stage", ["decontamination", "paraphrase"])
@pytest.mark.parametrize(
    "fmt, line, field",
    [("gsm8k", '{"prompt": "only a prompt"}', "question"), ("humaneval", '{"task_id": "x"}', "prompt")],
)
def test_benchmark_item_missing_a_field_names_key_file_and_line(tmp_path, stage, fmt, line, field):
    """Both benchmark stages refuse an item without its fields before any work (the
    paraphrase stage's loader ended in a KeyError traceback, exit 1)."""
    if stage == "paraphrase":
        from curate.classifiers import embedding

        if embedding.available():
            pytest.skip(embedding.available())
    bench = tmp_path / "bench.jsonl"
    bench.write_text(line + "\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"stages:\n  {stage}:\n    enabled: true\n    benchmarks:\n      - name: b\n        format: {fmt}\n"
        f"        path: {bench}\n"
    )
    shard = good_shard(tmp_path / "a.parquet")
    needles = (f"stages.{stage}.benchmarks[0]", str(bench), "line 1", field)
    assert_clear_error(curate("config", "check", str(cfg)), *needles)
    run = curate("run", "--config", str(cfg), "--input", str(shard), "--output", str(tmp_path / "o"))
    assert_clear_error(run, *needles, out=tmp_path / "o")


@pytest.mark.parametrize("stage", ["decontamination", "paraphrase"])
def test_empty_benchmark_file_is_refused(tmp_path, stage):
    """A benchmark file with no items decontaminates nothing: a mistake (a truncated
    download, a wrong file), refused before any work instead of a run that checks nothing."""
    if stage == "paraphrase":
        from curate.classifiers import embedding

        if embedding.available():
            pytest.skip(embedding.available())
    bench = tmp_path / "bench.jsonl"
    bench.write_text("")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"stages:\n  {stage}:\n    enabled: true\n    benchmarks:\n      - name: b\n        format: gsm8k\n"
        f"        path: {bench}\n"
    )
    assert_clear_error(
        curate("config", "check", str(cfg)), f"stages.{stage}.benchmarks[0]", str(bench), "no benchmark items"
    )


@pytest.mark.parametrize("stage", ["decontamination", "paraphrase"])
def test_benchmark_path_on_a_filesystem_beam_lacks(tmp_path, stage):
    """A gs:// benchmark path without apache-beam[gcp]: Beam raises ValueError, which ended
    in a traceback (exit 1); now the config key and the path, exit 2."""
    if stage == "paraphrase":
        from curate.classifiers import embedding

        if embedding.available():
            pytest.skip(embedding.available())
    try:
        from apache_beam.io.gcp import gcsio  # noqa: F401

        pytest.skip("apache-beam[gcp] is installed: gs:// paths have a filesystem")
    except ImportError:
        pass
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"stages:\n  {stage}:\n    enabled: true\n    benchmarks:\n      - name: b\n        format: gsm8k\n"
        "        path: gs://no-bucket/bench.jsonl\n"
    )
    assert_clear_error(
        curate("config", "check", str(cfg)), f"stages.{stage}.benchmarks[0]", "gs://no-bucket/bench.jsonl"
    )


# ---- per-document problems: rejected with a reason, everything else goes on ------------------


def test_per_document_problems_become_rejects(tmp_path):
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    rows = [
        {"id": "ok", "text": GOOD},
        {"id": "null", "text": None},
        {"id": "empty", "text": ""},
        {"id": "blank", "text": " \n\t \u3000"},
        {"id": None, "text": GOOD + " no id"},
        {"id": "dup", "text": GOOD + " first"},
        {"id": "dup", "text": GOOD + " second"},
        {"id": "ctrl", "text": GOOD + " \x00\x01\x07\x1b[31m control characters \x7f"},
    ]
    write_parquet(tmp_path / "a.parquet", rows, schema)
    # a string column holding bytes that are not UTF-8 (a lone surrogate, CESU-8 style)
    texts = pa.array([b"caf\xc3\xa9 " + GOOD.encode(), b"bad \xed\xa0\x80 surrogate " + GOOD.encode()], pa.binary())
    bad = pa.Array.from_buffers(pa.string(), 2, texts.buffers())
    pq.write_table(pa.table({"id": ["utf8ok", "utf8bad"], "text": bad}), tmp_path / "b.parquet")
    out = tmp_path / "out"
    result = run_pipeline([tmp_path / "*.parquet"], out, only_stages("language"))
    kept = set(read_dir(out / "kept").column("id").to_pylist())
    assert kept == {"ok", "ctrl", "utf8ok"}
    reasons = {(r["id"], r["reason"]) for r in read_rejects(out)["input_check"].to_pylist()}
    assert reasons == {
        ("null", "null_text"),
        ("empty", "empty_text"),
        ("blank", "empty_text"),
        (None, "null_id"),
        ("dup", "duplicate_id"),
        ("utf8bad", "invalid_utf8"),
    }
    assert result.funnel["conservation"]["ok"] and result.funnel["raw"]["docs"] == 10


def test_a_20_mb_document_goes_through_every_stage(tmp_path):
    paragraph = (
        "The committee reviewed the annual budget, because the costs of maintenance had grown. "
        "Therefore the members agreed to publish a detailed report next spring. "
    )
    huge = paragraph * (20_000_000 // len(paragraph))
    write_parquet(tmp_path / "a.parquet", [{"id": "huge", "text": huge}, {"id": "small", "text": GOOD}])
    out = tmp_path / "out"
    result = run_pipeline(
        [tmp_path / "a.parquet"],
        out,
        only_stages("exact_dedup", "near_dedup", "language", "quality", "decontamination"),
    )
    assert result.funnel["raw"]["chars"] >= 20_000_000 and result.funnel["conservation"]["ok"]
    ids = set(read_dir(out / "kept").column("id").to_pylist()) if (out / "kept").exists() else set()
    for table in read_rejects(out).values():
        ids |= set(table.column("id").to_pylist())
    assert ids == {"huge", "small"}


def test_blank_rows_are_what_trimming_every_text_would_find():
    """Only texts starting with whitespace are trimmed; the answer must equal trimming all
    of them (Unicode spaces, zero-width characters that are not spaces, nulls, slices)."""
    import random

    import pyarrow.compute as pc

    from curate.transforms.validate import blank_rows

    rng = random.Random(1)
    pieces = [" ", "\t", "\n", "\u3000", "\u2003", "\u0085", "\u00a0", "\u200b", "\ufeff", "a", "é", "中"]
    values = [
        None if rng.random() < 0.1 else "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 6)))
        for _ in range(5000)
    ]
    texts = pa.array(values, pa.string())
    trimmed = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0), False)
    expected = trimmed.to_numpy(zero_copy_only=False)
    assert 500 < expected.sum() < 4500
    assert (blank_rows(texts) == expected).all()
    assert (blank_rows(texts.slice(100, 50)) == expected[100:150]).all()


@pytest.mark.parametrize(
    "command",
    [["run"], ["funnel"], ["report"], ["train-quality"], ["config", "check"], ["config", "show"], ["job-service"]],
)
def test_every_command_help_says_its_exit_codes(tmp_path, command):
    """A script wrapping curate needs to know what each exit status means, for every command."""
    out = curate(*command, "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    section = out.stdout.split("exit codes:", 1)
    assert len(section) == 2, f"curate {' '.join(command)} --help has no exit codes section"
    assert "  2  " in section[1] and len(section[1].strip().splitlines()) >= 2
