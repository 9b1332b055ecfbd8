"""The committed sample corpus has the composition its generator documents, and the
default run on it shows the recipe: every step cuts, quality cuts most, and a few
hundred documents from all five mixture categories are kept."""

import json
import os
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest
from conftest import read_dir, read_rejects

from curate.pipelines import build
from curate.pipelines.build import sample_corpus_path
from curate.pipelines.config import load_config

EDUCATIONAL = {"stdlib_docs", "stdlib_code", "stdlib_exercises", "language_reference", "web_tutorial"}


@pytest.fixture(scope="module")
def rows():
    return pq.read_table(sample_corpus_path()).to_pylist()


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """``curate run``'s run: the default config (default.yaml) on the bundled sample."""
    out = tmp_path_factory.mktemp("sample") / "out"
    result = build.run(load_config(), str(out), log=lambda m: None)
    return out, result.funnel


def test_sample_composition(rows):
    assert 6000 <= len(rows) <= 12000
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    kinds = Counter(r["dup_kind"] for r in rows)
    assert 0.5 <= 1 - kinds["original"] / len(rows) <= 0.7  # ~60% of rows are copies
    originals = [r for r in rows if r["dup_kind"] == "original" and r["source"] != "blank"]
    assert len({r["text"] for r in originals}) == len(originals)  # the unique pages are unique
    langs = Counter(r["lang_hint"] for r in originals)
    english = langs.pop("en")
    assert 0.4 <= english / len(originals) <= 0.6  # about half of the unique pages are not English
    assert set(langs) == {"fr", "de", "es", "pt", "ru", "zh", "ja"}
    educational = sum(r["source"] in EDUCATIONAL for r in originals)
    assert 0.3 <= educational / english <= 0.5  # about two fifths of the English pages teach
    assert sum(r["source"] in EDUCATIONAL for r in rows) / len(rows) <= 0.2  # an eighth of the rows
    assert sum(r["source"] == "web_contaminated" for r in originals) == 8


def test_every_english_source_has_a_mixture_category(rows):
    """The default config maps each English source of the sample onto the mixture, and the
    educational sources (with the worked solutions) cover all of its categories."""
    mixing = load_config().stages.mixing
    english = {r["source"] for r in rows if r["lang_hint"] == "en"}
    assert english <= set(mixing.source_map)
    assert set(mixing.source_map.values()) <= set(mixing.weights)
    assert {mixing.source_map[s] for s in EDUCATIONAL | {"web_contaminated"}} == set(mixing.weights)


def test_generator_output_depends_on_nothing_but_the_seed(tmp_path):
    """Byte-identical output under another hash seed, home, temp folder, locale and working
    folder (a default argument's repr once carried the environment into a page)."""
    files = []
    for n, extra in enumerate(
        [{"PYTHONHASHSEED": "1"}, {"PYTHONHASHSEED": "2", "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "LANG": "C"}]
    ):
        path = tmp_path / f"s{n}.parquet"
        env = {**os.environ, **extra}
        subprocess.run(
            [sys.executable, "-m", "curate.sample.generate", str(path)],
            env=env,
            cwd=tmp_path if n else None,
            check=True,
        )
        files.append(path.read_bytes())
    assert files[0] == files[1]


def test_sample_run_cuts_at_every_step_and_quality_cuts_most(sample_run):
    _, funnel = sample_run
    run = {s["name"]: s for s in funnel["stages"] if s["status"] == "run"}
    steps = ["exact_dedup", "near_dedup", "language", "quality>=0.5", "quality>=0.8", "decontamination", "mixing"]
    assert all(run[name]["rejected"]["docs"] > 0 for name in steps)
    kept = {name: run[name]["kept"]["docs"] / run[name]["in"]["docs"] for name in steps}
    dedup = run["near_dedup"]["kept"]["docs"] / run["exact_dedup"]["in"]["docs"]
    assert 0.3 <= dedup <= 0.6 and 0.3 <= kept["language"] <= 0.6  # dedup and language about halve
    assert kept["quality>=0.5"] == min(kept.values())  # the strongest cut, as in the reference


def test_sample_run_keeps_hundreds_from_every_mixture_category(sample_run):
    out, funnel = sample_run
    mixture = json.loads((out / "mixture.json").read_text())
    assert mixture["infeasible"] == []
    assert all(v["achieved_tokens"] > 0 for v in mixture["sources"].values())
    # the mixture's total is the funnel's estimate for what the stage wrote (repeats included), to the token
    mixing = next(s for s in funnel["stages"] if s["name"] == "mixing")
    written_chars = mixing["kept"]["chars"] + mixing.get("repeats", {}).get("chars", 0)
    assert mixture["achieved_tokens"] == round(written_chars * funnel["tokens_per_char"])
    assert mixture["weights_note"] is None  # the default weights sum to 1 as written
    kept = read_dir(out / "kept")
    assert kept.num_rows >= 300  # issue #31: a kept set large enough to look at
    assert set(kept.column("mixture_source").to_pylist()) == set(mixture["sources"])


def test_sample_funnel_states_the_decontamination_index_as_published(sample_run):
    """The funnel's index line carries contamination.json's figures, its size readable at a few KB."""
    out, _ = sample_run
    idx = json.loads((out / "contamination.json").read_text())["index"]
    line = next(x for x in (out / "funnel.md").read_text().splitlines() if x.startswith("Index: "))
    assert 1_000 <= idx["bytes"] < 1_000_000 and f"({idx['bytes'] / 1e3:.3g} KB)" in line
    assert f"{idx['excluded_mostly_numbers']:,} mostly numbers" in line and idx["excluded_mostly_numbers"] > 0


def test_sample_run_against_the_ground_truth(rows, sample_run):
    """Exact and case/whitespace copies never survive together; the contaminated pages that
    reach decontamination are dropped there; non-English pages never reach the kept set."""
    out, _ = sample_run
    kept = read_dir(out / "kept").to_pylist()
    by_id = {r["id"]: r for r in rows}
    exact_family = Counter(by_id[r["id"]]["origin"] for r in kept if by_id[r["id"]]["dup_kind"] != "near")
    assert max(exact_family.values()) == 1
    assert all(by_id[r["id"]]["lang_hint"] == "en" for r in kept)
    assert not [r for r in kept if by_id[r["id"]]["source"] == "web_contaminated"]
    decontaminated = read_rejects(out).get("decontamination")
    assert set(decontaminated.column("source").to_pylist() if decontaminated else []) <= {"web_contaminated"}
