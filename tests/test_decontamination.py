"""Decontamination against the real benchmark test sets."""

from __future__ import annotations

import json
import subprocess

import pyarrow as pa
import pytest
from conftest import CURATE, only_stages, read_dir, read_rejects, run_pipeline, write_parquet

from curate.classifiers.benchmark_sets import BenchmarkFormatError, load_items
from curate.classifiers.ngram_index import NgramIndex

HOST = (
    "The history of the region is long and varied. Farmers grew wheat and barley on the hills, "
    "and traders carried wool to the coast every spring before the rains."
)


def _specs(benchmarks_dir):
    return [
        {"name": "gsm8k", "format": "gsm8k", "path": str(benchmarks_dir / "gsm8k_test.jsonl")},
        {"name": "humaneval", "format": "humaneval", "path": str(benchmarks_dir / "HumanEval.jsonl.gz")},
        {
            "name": "mmlu",
            "format": "mmlu",
            "path": str(benchmarks_dir / "mmlu_test"),
            "policy": "fraction",
            "min_fraction": 0.5,
        },
    ]


def test_loaders_read_the_real_files(benchmarks_dir):
    gsm = list(load_items("gsm8k", str(benchmarks_dir / "gsm8k_test.jsonl")))
    he = list(load_items("humaneval", str(benchmarks_dir / "HumanEval.jsonl.gz")))
    mmlu = list(load_items("mmlu", str(benchmarks_dir / "mmlu_test")))
    assert (len(gsm), len(he)) == (1319, 164) and len(mmlu) > 14000
    assert "<<" not in gsm[0][1] and "#### 18" in gsm[0][1]  # calculator annotations removed, answer kept
    assert he[0][0] == "HumanEval/0" and "def has_close_elements" in he[0][1] and "return False" in he[0][1]


def test_normalization_is_robust_to_case_punctuation_and_spacing():
    item = "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning, and bakes muffins."
    index = NgramIndex.build([("b", "b/1", item)], n=13)
    variants = [
        item.upper(),
        item.replace("'", "").replace(".", "").replace(",", ""),
        item.replace(" ", "\n  "),
        "Intro text here. " + item.lower() + " Outro.",
    ]
    assert all(index.match_batch(pa.array([v]))[0].get(0, 0) > 0 for v in variants)
    assert index.match_batch(pa.array([HOST]))[0] == {}


def test_stage_drops_planted_items_and_reports_them(tmp_path, benchmarks_dir):
    gsm = list(load_items("gsm8k", str(benchmarks_dir / "gsm8k_test.jsonl")))
    he = list(load_items("humaneval", str(benchmarks_dir / "HumanEval.jsonl.gz")))
    rows = [
        {"id": "clean", "text": HOST},
        {"id": "gsm", "text": HOST + "\n\n" + gsm[5][1].upper()},
        {"id": "code", "text": "Here is my solution:\n" + he[3][1]},
        {"id": "partial", "text": HOST + " " + " ".join(gsm[7][1].split()[:14])},
    ]
    write_parquet(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    cfg = only_stages("decontamination", decontamination={"benchmarks": _specs(benchmarks_dir)})
    result = run_pipeline([tmp_path / "in.parquet"], out, cfg)
    assert read_dir(out / "kept").column("id").to_pylist() == ["clean"]
    rej = {r["id"]: r for r in read_rejects(out)["decontamination"].to_pylist()}
    assert rej["gsm"]["contamination_benchmark"] == "gsm8k" and rej["gsm"]["contamination_item"] == "gsm8k/6"
    assert rej["code"]["contamination_item"] == "HumanEval/3" and rej["code"]["reason"] == "contaminated:humaneval"
    assert rej["partial"]["matched_ngrams"] >= 1
    report = json.loads((out / "contamination.json").read_text())
    assert report["benchmarks"]["gsm8k"] == {
        "docs_dropped": 2,
        "docs_cut": 0,
        "chars_cut": 0,
        "items_found": 2,
        "items": {"gsm8k/6": 1, "gsm8k/8": 1},
    }
    assert report["index"]["items"] > 15000 and report["index"]["excluded_common_across_items"] > 0
    assert result.funnel["conservation"]["ok"]


def test_bad_benchmark_file_stops_before_output(tmp_path):
    bad = tmp_path / "bench.jsonl"
    bad.write_text('{"question": "q1", "answer": "a1"}\nnot json at all\n')
    with pytest.raises(BenchmarkFormatError, match="line 2"):
        list(load_items("gsm8k", str(bad)))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"stages:\n  decontamination:\n    benchmarks:\n      - name: mine\n        format: gsm8k\n"
        f"        path: {bad}\n"
    )
    write_parquet(tmp_path / "in.parquet", [{"id": "a", "text": HOST}])
    proc = subprocess.run(
        [
            CURATE,
            "run",
            "--config",
            str(cfg),
            "--input",
            str(tmp_path / "in.parquet"),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and str(bad) in proc.stderr and "line 2" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cut_policy_removes_the_span_and_keeps_the_rest(tmp_path, benchmarks_dir):
    gsm = list(load_items("gsm8k", str(benchmarks_dir / "gsm8k_test.jsonl")))
    before = " ".join(["The river valley was settled early by farming communities."] * 8)
    after = " ".join(["Trade routes later connected the towns along the northern coast."] * 8)
    rows = [
        {"id": "cut", "text": before + "\n\n" + gsm[10][1] + "\n\n" + after},
        {"id": "many", "text": "\n\n".join(g[1] + "\n\n" + before for g in gsm[20:35])},
        {"id": "clean", "text": before},
    ]
    write_parquet(tmp_path / "in.parquet", rows)
    specs = [
        {
            "name": "gsm8k",
            "format": "gsm8k",
            "path": str(benchmarks_dir / "gsm8k_test.jsonl"),
            "policy": "cut",
            "cut_window": 50,
            "min_piece_chars": 100,
            "max_cuts": 10,
        }
    ]
    out = tmp_path / "out"
    result = run_pipeline(
        [tmp_path / "in.parquet"], out, only_stages("decontamination", decontamination={"benchmarks": specs})
    )
    kept = {r["id"]: r for r in read_dir(out / "kept").to_pylist()}
    assert set(kept) == {"cut", "clean"} and kept["clean"]["contamination_cuts"] == 0
    assert kept["cut"]["contamination_cuts"] == 1
    assert gsm[10][1].split("\n")[0][:60] not in kept["cut"]["text"]
    assert kept["cut"]["text"].startswith("The river valley") and kept["cut"]["text"].endswith("northern coast.")
    cuts = read_dir(out / "cuts" / "decontamination").to_pylist()
    # a dropped document is whole in the rejects; only a kept one's removed text is in cuts/
    assert {c["id"] for c in cuts} == {"cut"} and any(gsm[10][1][:40] in c["cut_text"] for c in cuts)
    rej = read_rejects(out)["decontamination"].to_pylist()
    assert [(r["id"], r["reason"]) for r in rej] == [("many", "contaminated:gsm8k:too_many_cuts")]
    assert result.funnel["conservation"]["ok"]
    # the cut document's item is reported as found, beside the dropped one's
    found = json.loads((out / "contamination.json").read_text())["benchmarks"]["gsm8k"]
    assert (found["docs_dropped"], found["docs_cut"]) == (1, 1) and found["items_found"] >= 2
    assert found["chars_cut"] == len(rows[0]["text"]) - len(kept["cut"]["text"])
    assert "| gsm8k | 1 | 1 |" in (out / "funnel.md").read_text()
    said = f"decontamination removed {found['chars_cut']:,} characters from 1 document it kept"
    assert said in (out / "funnel.md").read_text() and said in (out / "report.html").read_text()


def test_cut_text_and_kept_text_together_hold_every_word():
    """Pieces between cuts too short to keep are removed with the windows, and written with them."""
    from curate.classifiers.ngram_index import cut_matches, token_spans

    text = "Short lead-in words. " + "target words are right here " + "mid " + "a long piece that is kept " * 8
    tokens, _ = token_spans(text)
    kept, removed, n_cuts = cut_matches(text, [tokens.index("target")], 3, window=10, min_piece=40)
    assert n_cuts == 1 and "a long piece" in kept and "Short lead-in" not in kept  # the lead-in: too short
    assert sorted("".join((kept + "".join(removed)).split())) == sorted("".join(text.split()))
    dropped, removed, _ = cut_matches(text, [tokens.index("target")], 3, window=10, min_piece=10_000)
    assert dropped is None and "".join("".join(removed).split()) == "".join(text.split())


def test_loaders_for_arc_hellaswag_mbpp_and_generic(tmp_path):
    """One item in each file format as the benchmarks publish them."""
    arc = tmp_path / "arc.jsonl"
    arc.write_text(
        json.dumps(
            {
                "id": "Mercury_7175875",
                "question": {
                    "stem": "Which gas do plants absorb?",
                    "choices": [{"text": "oxygen", "label": "A"}, {"text": "carbon dioxide", "label": "B"}],
                },
                "answerKey": "B",
            }
        )
        + "\n"
    )
    hella = tmp_path / "hellaswag.jsonl"
    hella.write_text(
        json.dumps(
            {
                "ind": 24,
                "ctx": "A man is sitting on a roof. he",
                "endings": ["is using wrap to wrap a pair of skis.", "starts pulling up roofing."],
                "label": 1,
            }
        )
        + "\n"
    )
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(
        json.dumps(
            {
                "task_id": 11,
                "text": "Write a function to remove the first and last occurrence.",
                "code": "def remove_Occ(s,ch): return s",
                "test_list": ["assert remove_Occ('x','x')"],
            }
        )
        + "\n"
    )
    generic = tmp_path / "mine.csv"
    generic.write_text("qid,question,answer\nq1,What is two plus two?,four\n")
    assert list(load_items("arc", str(arc))) == [
        ("Mercury_7175875", "Which gas do plants absorb?\noxygen carbon dioxide")
    ]
    assert list(load_items("hellaswag", str(hella))) == [
        ("24", "A man is sitting on a roof. he starts pulling up roofing.")
    ]
    assert (
        list(load_items("mbpp", str(mbpp)))[0][1].startswith("Write a function")
        and "assert" in list(load_items("mbpp", str(mbpp)))[0][1]
    )
    assert list(load_items("generic", str(generic), ["question", "answer"], "qid")) == [
        ("q1", "What is two plus two?\nfour")
    ]
    with pytest.raises(BenchmarkFormatError, match="needs question.stem"):
        bad = tmp_path / "bad_arc.jsonl"
        bad.write_text(json.dumps({"question": "plain"}) + "\n")
        list(load_items("arc", str(bad)))


def test_bitmap_prefilter_finds_exactly_what_binary_search_finds():
    import numpy as np

    rng = np.random.default_rng(7)
    keys = np.unique(rng.integers(0, 2**63, 50_000, dtype=np.uint64) * np.uint64(2))
    owners = np.arange(len(keys), dtype=np.int32)
    index = NgramIndex(13, keys, owners, ["x"], ["b"], np.ones(1, np.int32), {})
    values = np.concatenate(
        [keys[::7], rng.integers(0, 2**63, 200_000, dtype=np.uint64) * np.uint64(2) + np.uint64(1), keys[-3:]]
    )
    pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    expected = np.where(keys[pos] == values, owners[pos], -1)
    found = index.lookup(values)
    assert (found == expected).all() and (found >= 0).sum() == len(keys[::7]) + 3


def test_compiled_matching_equals_numpy_grams_and_search(benchmarks_dir, real_docs_path):
    """``match_batch`` (rolling gram hashes + bitmap + binary search in one compiled pass)
    finds what numpy's shingle hashes and a searchsorted over the index find, on real
    documents with benchmark items planted whole, cut short and as short items."""
    import numpy as np
    import pyarrow.parquet as pq

    from curate.classifiers.ngram_index import grams_from_token_hashes, text_token_hashes

    items = [("gsm8k", i, t) for i, t in load_items("gsm8k", str(benchmarks_dir / "gsm8k_test.jsonl"))][:300]
    items += [("mmlu", i, t) for i, t in load_items("mmlu", str(benchmarks_dir / "mmlu_test"))][:3000]
    index = NgramIndex.build(items, n=13)
    assert index.short, "the MMLU slice holds items shorter than 13 tokens"
    docs = pq.read_table(real_docs_path, columns=["text"]).column(0).to_pylist()[:600]
    short_item = next(t for _, _, t in items if 6 <= len(t.split()) < 13)
    planted = [d + " " + items[k][2] + " " + d[:200] for k, d in zip(range(0, 300, 3), docs[:100])]
    planted += [items[k][2][: len(items[k][2]) // 2] for k in range(1, 300, 5)] + [f"see: {short_item} and more"]
    texts = pa.array(docs + planted, pa.string())

    got = index.match_batch(texts)
    token_h, token_off = text_token_hashes(texts)
    values, offsets, _ = grams_from_token_hashes(token_h, token_off, index.n)
    owners = index.lookup(values)
    for d in range(len(texts)):
        seg = owners[offsets[d] : offsets[d + 1]]
        hits = np.flatnonzero(seg >= 0)
        expected = {int(i): int((seg == i).sum()) for i in np.unique(seg[hits])}
        if len(hits):
            expected[-1] = hits.tolist()
        for length, (keys, owners_l) in index.short.items():
            v, o, _ = grams_from_token_hashes(
                token_h[token_off[d] : token_off[d + 1]], np.array([0, token_off[d + 1] - token_off[d]]), length
            )
            for item in np.unique(index._lookup(keys, owners_l, v)):
                if item >= 0:
                    expected[int(item)] = expected.get(int(item), 0) + 1
        assert got[d] == expected, d
    assert sum(bool(g) for g in got[len(docs) :]) >= 100


def test_classifiers_load_benchmarks_without_beam(benchmarks_dir):
    """The classifiers layer is pure: loading every benchmark format's items and views
    (and importing every classifiers module) must not import Beam; the stages pass
    ``transforms.io.BeamFiles`` for remote paths."""
    import sys
    from pathlib import Path

    import curate.classifiers as pkg

    modules = sorted(p.stem for p in Path(pkg.__file__).parent.glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('curate.classifiers.' + m)\n"
        "from curate.classifiers.benchmark_sets import load_items\n"
        "from curate.classifiers.paraphrase import load_item_views\n"
        f"d = {str(benchmarks_dir)!r}\n"
        "n = sum(1 for _ in load_items('gsm8k', d + '/gsm8k_test.jsonl'))\n"
        "n += sum(1 for _ in load_items('humaneval', d + '/HumanEval.jsonl.gz'))\n"
        "n += sum(1 for _ in load_items('mmlu', d + '/mmlu_test/*_test.csv'))\n"
        "n += len(load_item_views('mmlu', 'mmlu', d + '/mmlu_test'))\n"
        "print(n, 'apache_beam' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) > 2 * 14_000 and out[1] == "False", out
