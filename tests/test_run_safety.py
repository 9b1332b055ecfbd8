"""No run may publish a wrong output: one run per output folder, conservation
counted on the files about to be published, empty inputs and empty results,
and configuration mistakes stopped before any work (issue #26)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CURATE, read_dir, read_rejects, write_parquet

from curate.pipelines import build
from curate.pipelines.build import sample_corpus_path
from curate.pipelines.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def curate(*args, env=None, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CURATE, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        **kwargs,
    )


def published_ids(out: Path) -> list[str]:
    """Ids of every document the run published: kept (first copies) and every rejects folder."""
    kept = pa.concat_tables([pq.read_table(p) for p in sorted((out / "kept").rglob("*.parquet"))])
    if "epoch" in kept.schema.names:
        kept = kept.filter(pa.compute.equal(kept.column("epoch"), 0))
    ids = kept.column("id").to_pylist()
    for table in read_rejects(out).values():
        ids += table.column("id").to_pylist()
    return sorted(ids)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"the run ended (exit {proc.returncode}) before {path.name}: {proc.stderr.read()[-2000:]}"
            )
        assert time.time() < deadline, f"timed out waiting for {path}"
        time.sleep(0.05)


# -- 1. one run per output folder ------------------------------------------------------------------


def test_second_run_into_a_staging_output_exits_2_and_the_first_publishes_everything(tmp_path):
    out, hook = tmp_path / "out", tmp_path / "hook"
    hook.mkdir()
    first = subprocess.Popen(
        [CURATE, "run", "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CURATE_TEST_PAUSE_BEFORE_PUBLISH": str(hook)},
    )
    try:
        _wait_for(hook / "staged", first)  # the first run has staged everything and waits to publish
        staging = Path((hook / "staged").read_text())
        assert staging.is_dir() and staging.parent == out
        second = curate("run", "--output", str(out), "--overwrite")
        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr and "in use by run" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert staging.is_dir() and any(staging.rglob("*.parquet"))  # the live run's staging is untouched
    finally:
        (hook / "go").write_text("")
        _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert (out / "_SUCCESS").exists() and not list(out.glob("_tmp-*")) and not (out / "_curate.lock").exists()
    input_ids = sorted(pq.read_table(sample_corpus_path(), columns=["id"]).column(0).to_pylist())
    assert published_ids(out) == input_ids


def test_a_dead_runs_lock_and_staging_are_cleaned_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from curate.pipelines.output_lock import OutputLock; "
            f"OutputLock({str(out)!r}, 'x').acquire(); print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    (out / "_tmp-deadrun" / "kept").mkdir(parents=True)
    (out / "_tmp-deadrun" / "kept" / "part-00000-of-00001.parquet").write_bytes(b"partial")
    (out / "_tmp-emptyrun").mkdir()  # a run that died before staging a file: a folder with none
    blocked = curate("run", "--output", str(out))
    assert blocked.returncode == 2 and f"pid {holder.pid}" in blocked.stderr
    assert (out / "_tmp-deadrun").is_dir()  # a live holder: nothing of it is cleaned
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    done = curate("run", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert not (out / "_tmp-deadrun").exists() and (out / "_SUCCESS").exists()
    assert not list(out.glob("_tmp-*"))


# -- conservation on what is published ---------------------------------------------------------------


def test_a_staged_shard_lost_before_publishing_fails_the_run_and_publishes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    removed = []

    def lose_a_shard(staging: str) -> None:
        shard = sorted(Path(staging, "rejects").rglob("*.parquet"))[0]
        removed.append(shard.relative_to(staging))
        shard.unlink()

    monkeypatch.setattr(build, "before_publish", lose_a_shard)
    with pytest.raises(build.ConservationError) as failure:
        build.run(load_config(), str(out), log=lambda m: None)
    message = str(failure.value)
    assert str(removed[0].parent) in message and "nothing was published" in message, message
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("_tmp-")) == []


# -- 2, 3. empty input, nothing kept ------------------------------------------------------------------


def test_input_of_one_zero_row_shard_finishes_with_an_empty_kept_folder(tmp_path):
    shard = write_parquet(tmp_path / "empty.parquet", [], pa.schema([("id", pa.string()), ("text", pa.string())]))
    out = tmp_path / "out"
    done = curate("run", "--input", str(shard), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert not list(out.glob("_tmp-*")) and (out / "_SUCCESS").exists()
    kept = read_dir(out / "kept")
    assert kept is not None and kept.num_rows == 0 and {"id", "text", "lang", "edu_score"} <= set(kept.schema.names)
    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel["raw"]["docs"] == 0 and funnel["conservation"]["ok"]
    assert all(s["kept"]["docs"] == 0 for s in funnel["stages"] if s["status"] == "run")
    assert "holds no documents" in (out / "report.html").read_text()
    raw_row = next(line for line in (out / "funnel.md").read_text().splitlines() if line.startswith("| raw |"))
    assert "1,000,000,000" not in raw_row and "100.00%" not in raw_row  # no projection from nothing


def test_a_run_that_keeps_nothing_still_writes_a_schema_correct_kept_shard(tmp_path):
    config = tmp_path / "japanese.yaml"
    config.write_text("stages:\n  language:\n    languages: [ja]\n")
    out = tmp_path / "out"
    done = curate("run", "--config", str(config), "--output", str(out))
    assert done.returncode == 0, done.stderr
    files = sorted((out / "kept").glob("*.parquet"))
    assert [f.name for f in files] == ["part-00000-of-00001.parquet"]  # the only file: one of one
    kept = pq.read_table(files[0])
    assert kept.num_rows == 0
    assert {"id", "text", "lang", "lang_score", "edu_score", "mixture_source", "epoch"} <= set(kept.schema.names)


# -- 4, 5, 6. mistakes stopped before any work --------------------------------------------------------


def _assert_stopped_early(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_output_that_is_a_file_stops_before_any_work(tmp_path):
    target = tmp_path / "out"
    target.write_text("a file")
    _assert_stopped_early(curate("run", "--output", str(target)), str(target), "is an existing file")
    _assert_stopped_early(curate("run", "--output", str(target / "sub")), "which is a file")
    assert target.read_text() == "a file"


def test_output_folder_without_write_permission_stops_before_any_work(tmp_path):
    locked = tmp_path / "readonly"
    locked.mkdir()
    os.chmod(locked, 0o555)
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: run without the capability to bypass permissions
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv (util-linux): cannot make a folder unwritable")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    try:
        done = subprocess.run(
            [*prefix, CURATE, "run", "--output", str(locked / "out")], capture_output=True, text=True, timeout=300
        )
        _assert_stopped_early(done, str(locked), "without write permission")
        assert not (locked / "out").exists()
    finally:
        os.chmod(locked, 0o755)


def test_missing_benchmark_file_names_the_config_key(tmp_path):
    config = tmp_path / "bench.yaml"
    missing = tmp_path / "nope" / "gsm8k_test.jsonl"
    config.write_text(
        f"stages:\n  decontamination:\n    benchmarks:\n      - name: gsm8k\n        format: gsm8k\n"
        f"        path: {missing}\n"
    )
    out = tmp_path / "out"
    _assert_stopped_early(
        curate("run", "--config", str(config), "--output", str(out)),
        "stages.decontamination.benchmarks[0].path",
        str(missing),
    )
    assert not out.exists()


@pytest.mark.parametrize("code", ["english", "EN"])
def test_language_names_and_wrong_case_codes_are_refused_with_the_valid_code(tmp_path, code):
    config = tmp_path / "lang.yaml"
    config.write_text(f"stages:\n  language:\n    languages: [{code}]\n")
    out = tmp_path / "out"
    _assert_stopped_early(
        curate("run", "--config", str(config), "--output", str(out)), "stages.language.languages[0]", "did you mean en?"
    )
    assert not out.exists()


# -- 7. configs layer over the defaults ---------------------------------------------------------------


def test_runner_configs_only_add_runner_options():
    default = load_config()
    for path in sorted(CONFIGS.glob("*.yaml")):
        data = __import__("yaml").safe_load(path.read_text()) or {}
        if set(data) - {"runner"}:
            continue  # not a runner config (benchmarks.yaml, mixtures.yaml change the recipe on purpose)
        cfg = load_config(str(path))
        assert cfg.stages == default.stages and cfg.input == default.input and cfg.output == default.output, path
        assert cfg.stages.mixing.source_map  # the defaults' source map survives the runner config


def test_config_layers_later_wins_key_by_key_and_show_and_check(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("stages:\n  quality:\n    low: 0.4\n    high: 0.9\nrunner:\n  options:\n    runner: DirectRunner\n")
    b.write_text("stages:\n  quality:\n    high: 0.7\nrunner:\n  options:\n    direct_num_workers: 1\n")
    cfg = load_config([str(a), str(b)])
    assert (cfg.stages.quality.low, cfg.stages.quality.high) == (0.4, 0.7)
    assert cfg.runner.options == {"runner": "DirectRunner", "direct_num_workers": 1}
    assert cfg.stages.mixing.source_map == load_config().stages.mixing.source_map
    shown = curate("config", "show", "--config", str(a), "--config", str(b))
    assert shown.returncode == 0, shown.stderr
    assert (
        "high: 0.7" in shown.stdout and "low: 0.4" in shown.stdout and "stdlib_docs: synthetic_textbook" in shown.stdout
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  quality:\n    low: 0.9\n    high: 0.5\n")
    checked = curate("config", "check", str(a), str(bad))
    assert checked.returncode == 2
    assert f"{a}: ok" in checked.stdout and f"{bad}: config key stages.quality.high" in checked.stderr


def test_every_runner_config_keeps_what_the_default_keeps(tmp_path):
    """Runs the shipped runner configs that can run here (the DirectRunner's) on the sample;
    the others are covered by ``test_runner_configs_only_add_runner_options`` and, for the
    portable and Dask runners, by tests/test_runners.py's byte-for-byte comparisons."""
    default = curate("run", "--output", str(tmp_path / "default"))
    assert default.returncode == 0, default.stderr
    direct = curate(
        "run", "--config", "configs/direct.yaml", "--output", str(tmp_path / "direct"), cwd=str(CONFIGS.parent)
    )
    assert direct.returncode == 0, direct.stderr
    kept = {name: sorted(read_dir(tmp_path / name / "kept").column("id").to_pylist()) for name in ("default", "direct")}
    assert kept["direct"] == kept["default"] and len(kept["default"]) > 0


# -- 8, 9. exact mixture arithmetic, weights that do not sum to 1 ---------------------------------------


def test_no_source_repeats_when_the_budget_is_the_largest_without_repeats():
    """With no budget, the binding source's rate is exactly 1: one epoch, never ceil(1 + 2e-16) = 2."""
    from curate.classifiers.mixture import plan_mixture, tokens_from_chars

    weights = {
        "synthetic_textbook": 0.35,
        "synthetic_exercises": 0.15,
        "filtered_web": 0.30,
        "code": 0.15,
        "other": 0.05,
    }
    rng = random.Random(7)
    for _ in range(300):
        chars = {s: rng.randint(1, 10**8) for s in weights if rng.random() < 0.8}
        plan = plan_mixture(tokens_from_chars(chars, 0.26), weights, None)
        assert all(v["epochs"] <= 1 for v in plan["sources"].values()), plan
        assert any(v["sampling_rate_exact"] == "1" for v in plan["sources"].values()), plan
        assert plan["budget_met"]
    # the order the sums arrive in cannot matter: the plan is the same object
    chars = {"a": 123457, "b": 98765}
    assert plan_mixture(
        tokens_from_chars(dict(reversed(chars.items())), 0.26), {"a": 0.5, "b": 0.5}, None
    ) == plan_mixture(tokens_from_chars(chars, 0.26), {"a": 0.5, "b": 0.5}, None)
    assert Fraction(plan["sources"]["code"]["sampling_rate_exact"]) <= 1


def test_weights_that_do_not_sum_to_1_warn_and_are_recorded(tmp_path):
    config = tmp_path / "mix.yaml"
    config.write_text(
        "stages:\n  mixing:\n    weights:\n      synthetic_textbook: 0.7\n      filtered_web: 0.6\n"
        "      code: 0.3\n      synthetic_exercises: 0.3\n      other: 0.1\n"
    )
    out = tmp_path / "out"
    done = curate("run", "--config", str(config), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "stages.mixing.weights sum to 2, not 1" in done.stderr
    mixture = json.loads((out / "mixture.json").read_text())
    assert mixture["weights_normalised"]["synthetic_textbook"] == 0.35
    assert mixture["weights_given"]["synthetic_textbook"] == 0.7 and "normalised" in mixture["weights_note"]


# -- 10. control characters in the report ------------------------------------------------------------


def test_control_characters_from_documents_are_made_visible_in_the_report():
    from curate.pipelines.funnel import build_funnel
    from curate.pipelines.report import render_html

    funnel = build_funnel(
        [
            ["raw", "kept", "", 1, 10],
            ["input_check", "in", "", 1, 10],
            ["input_check", "rejected", "bad\u202eevil", 1, 10],
        ],
        [("input_check", "input_check")],
        0.26,
    )
    text = "safe \x00 nul \x1b[31m esc \u202eevil reversed\u202c \u2066iso\u2069 end"
    html = render_html(funnel, {"input_check": {"bad\u202eevil": [{"id": "d\u202e1", "text": text, "chars": 40}]}})
    for raw in ("\x00", "\x1b", "\u202e", "\u202c", "\u2066", "\u2069"):
        assert raw not in html
    assert "\\u202e" in html and "\\u0000" in html and "\\u001b" in html


# -- also: a dataset folder as input --------------------------------------------------------------------


def test_input_folder_reads_every_parquet_under_it_skipping_bookkeeping_files(tmp_path):
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    data = tmp_path / "dataset"
    rows = lambda k: [{"id": f"{k}-{i}", "text": f"document {k} {i} " * 20} for i in range(3)]  # noqa: E731
    write_parquet(data / "part-0.parquet", rows("a"), schema)
    write_parquet(data / "year=2024" / "part-1.parquet", rows("b"), schema)
    write_parquet(data / "_temporary" / "part-9.parquet", rows("tmp"), schema)  # Spark's unfinished task output
    write_parquet(data / ".hidden.parquet", rows("hidden"), schema)
    (data / "_SUCCESS").write_text("")
    (data / ".part-0.parquet.crc").write_bytes(b"\x00crc")
    from curate.transforms.io import expand_inputs

    assert expand_inputs([str(data)]) == [str(data / "part-0.parquet"), str(data / "year=2024" / "part-1.parquet")]
    out = tmp_path / "out"
    done = curate("run", "--input", str(data), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "funnel.json").read_text())["raw"]["docs"] == 6


def test_every_published_path_is_shell_safe(tmp_path):
    """rejects/quality>=0.5 had to be quoted in every shell command; the funnel keeps the display name."""
    import re

    out = tmp_path / "out"
    done = curate("run", "--output", str(out))
    assert done.returncode == 0, done.stderr
    paths = [str(p.relative_to(out)) for p in out.rglob("*")]
    assert "rejects/quality_ge_0.5" in paths and "rejects/quality_ge_0.8" in paths
    assert [p for p in paths if not re.fullmatch(r"[A-Za-z0-9._/-]+", p)] == []
    names = [s["name"] for s in json.loads((out / "funnel.json").read_text())["stages"]]
    assert "quality>=0.5" in names
