"""The committed sample corpus has the composition its generator documents."""

from collections import Counter

import pyarrow.parquet as pq

from curate.pipelines.build import sample_corpus_path


def test_sample_composition():
    t = pq.read_table(sample_corpus_path())
    assert 3000 <= t.num_rows <= 5000
    ids = t.column("id").to_pylist()
    assert len(set(ids)) == len(ids)
    kinds = Counter(t.column("dup_kind").to_pylist())
    assert 0.5 <= 1 - kinds["original"] / t.num_rows <= 0.7  # ~60% of rows are copies
    originals = [r for r in t.to_pylist() if r["dup_kind"] == "original" and r["source"] != "blank"]
    langs = Counter(r["lang_hint"] for r in originals)
    english = langs.pop("en")
    assert 0.4 <= english / len(originals) <= 0.6  # about half of the unique pages are not English
    assert set(langs) == {"fr", "de", "es", "pt", "ru", "zh", "ja"}
    educational = sum(r["source"] in ("stdlib_docs", "stdlib_code") for r in originals)
    assert 0.05 <= educational / english <= 0.2  # a small educational top
    assert sum(r["source"] == "web_contaminated" for r in originals) == 8
