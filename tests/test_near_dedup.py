"""MinHash identity with datasketch, LSH parameters, and the near-dedup stage."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import only_stages, read_dir, read_rejects, run_pipeline, write_parquet
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from curate.classifiers import minhash as mh


def _datasketch_signature(tokens: list[str], k: int, num_perm: int, seed: int, bits: int) -> np.ndarray:
    if len(tokens) >= k:
        shingles = [tokens[j : j + k] for j in range(len(tokens) - k + 1)]
    else:
        shingles = [tokens] if tokens else []
    m = MinHash(
        num_perm=num_perm,
        seed=seed,
        scheme=f"affine{bits}",
        hashfunc=lambda b: mh.shingle_hash(b.decode("utf-8").split(" "), bits),
    )
    m.update_batch([" ".join(s).encode("utf-8") for s in shingles])
    return m.hashvalues


@pytest.mark.parametrize("bits", [32, 64])
def test_batched_signatures_identical_to_datasketch(bits, real_docs_path):
    table = pq.read_table(real_docs_path)
    langs = table.column("lang").to_pylist()
    # English and CJK (character shingles) and a few degenerate texts
    pick = [i for i, lang in enumerate(langs) if lang in ("en", "zh", "ja", "ru")][::15][:150]
    texts = [table.column("text")[i].as_py() for i in pick] + ["", "one two", "a b c d e f", "！！！"]
    hasher = mh.MinHasher(num_perm=64, seed=7, ngram=5, bits=bits)
    ours = hasher.signatures(texts)
    tokens = mh.tokenize(pa.array(texts)).to_pylist()
    assert any(len(t[0]) == 1 for t, i in zip(tokens, pick) if langs[i] in ("zh", "ja") and t)  # characters
    for i, toks in enumerate(tokens):
        np.testing.assert_array_equal(ours[i], _datasketch_signature(toks, 5, 64, 7, bits), err_msg=texts[i][:80])


def test_optimal_bands_match_datasketch():
    for threshold, num_perm in [(0.8, 112), (0.7, 128), (0.9, 64)]:
        assert mh.optimal_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_cjk_documents_get_character_shingles():
    tokens = mh.tokenize(pa.array(["今天天气很好，我们去公园。", "The weather is nice today."])).to_pylist()
    assert tokens[0][:4] == ["今", "天", "天", "气"] and tokens[1] == ["the", "weather", "is", "nice", "today"]


def _edit(text: str, n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    words = text.split()
    for i in rng.choice(len(words), size=n, replace=False):
        words[i] = "zzzq"
    return " ".join(words)


def _base_docs(real_docs_path, count):
    t = pq.read_table(real_docs_path).to_pylist()
    return [r["text"] for r in t if r["genre"] == "textbook" and 1500 < len(r["text"]) < 6000][:count]


@pytest.mark.parametrize(
    "rounds,verify,join",
    [(6, "exact", "shuffle"), (0, "exact", "side_input"), (0, "signature", None), (0, "none", "shuffle")],
)
def test_near_duplicates_are_clustered_and_one_kept(tmp_path, real_docs_path, rounds, verify, join):
    base = _base_docs(real_docs_path, 6)
    rows = [{"id": f"b{i}", "text": t} for i, t in enumerate(base)]
    # b0 gets two light copies; a chain b1 -> c1 -> d1 where b1 and d1 are further apart
    rows.append({"id": "a0", "text": _edit(base[0], 2, 1)})
    rows.append({"id": "z0", "text": _edit(base[0], 3, 2)})
    chain1 = _edit(base[1], 4, 3)
    rows.append({"id": "c1", "text": chain1})
    rows.append({"id": "d1", "text": _edit(chain1, 4, 4)})
    rows.append({"id": "far2", "text": _edit(base[2], len(base[2].split()) // 3, 5)})  # J well below 0.8
    write_parquet(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    result = run_pipeline(
        [tmp_path / "in.parquet"],
        out,
        only_stages("near_dedup", near_dedup={"rounds": rounds, "verify": verify, "join": join}),
    )
    kept = sorted(read_dir(out / "kept").column("id").to_pylist())
    assert kept == ["a0", "b1", "b2", "b3", "b4", "b5", "far2"]
    rej = {r["id"]: (r["reason"], r["duplicate_of"]) for r in read_rejects(out)["near_dedup"].to_pylist()}
    assert rej == {
        "b0": ("near_duplicate", "a0"),
        "z0": ("near_duplicate", "a0"),
        "c1": ("near_duplicate", "b1"),
        "d1": ("near_duplicate", "b1"),
    }
    stage = next(s for s in result.funnel["stages"] if s["name"] == "near_dedup")
    assert stage["clusters"]["size_histogram"] == {"3": 2}


def test_keep_longest_text(tmp_path, real_docs_path):
    base = _base_docs(real_docs_path, 1)[0]
    rows = [{"id": "a", "text": base}, {"id": "b", "text": base + " and one more sentence here."}]
    write_parquet(tmp_path / "in.parquet", rows)
    run_pipeline(
        [tmp_path / "in.parquet"], tmp_path / "out", only_stages("near_dedup", near_dedup={"keep": "longest_text"})
    )
    assert read_dir(tmp_path / "out" / "kept").column("id").to_pylist() == ["b"]
