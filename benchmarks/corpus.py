"""Scaled corpora from the shared real documents, as Parquet shards.

A crawl-like mix: every document is a real one made distinct by substituting
30% of its words (vocabulary drawn from the real corpus, so language ID still
sees the original language), then some get an exact copy (5%) or a near copy
at a 1% edit rate (10%), the duplicate rates dedup is there to remove.
Columns: id, text, source (the real document's source).  Deterministic for a
seed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import REAL_DOCS

EXACT_COPY, NEAR_COPY, DISTINCT_EDIT, NEAR_EDIT = 0.05, 0.10, 0.30, 0.01


def _edit(words: list[str], rate: float, vocab: list[str], rng: random.Random) -> str:
    out = list(words)
    for i in range(len(out)):
        if rng.random() < rate:
            out[i] = rng.choice(vocab)
    return " ".join(out)


def scaled_rows(n_docs: int, seed: int = 1):
    """Yield (id, text, source) for ``n_docs`` documents."""
    table = pq.read_table(REAL_DOCS, columns=["text", "source", "lang"])
    base = [
        (t.split(), s, lang) for t, s, lang in zip(*(table.column(c).to_pylist() for c in ("text", "source", "lang")))
    ]
    vocab_by_lang: dict[str, list[str]] = {}
    for words, _, lang in base:
        vocab_by_lang.setdefault(lang, []).extend(words[:200])
    rng = random.Random(seed)
    made = 0
    while made < n_docs:
        words, source, lang = rng.choice(base)
        vocab = vocab_by_lang[lang]
        text = _edit(words, DISTINCT_EDIT, vocab, rng) if len(words) >= 20 else " ".join(words) + f" {made}"
        yield f"d{made:08d}", text, source
        made += 1
        roll = rng.random()
        if made < n_docs and roll < EXACT_COPY:
            yield f"d{made:08d}", text, source
            made += 1
        elif made < n_docs and roll < EXACT_COPY + NEAR_COPY:
            yield f"d{made:08d}", _edit(text.split(), NEAR_EDIT, vocab, rng), source
            made += 1


def write_scaled_corpus(
    n_docs: int, out_dir: Path, shards: int = 8, row_group_rows: int = 4096, seed: int = 1
) -> list[Path]:
    """Write ``n_docs`` documents as ``shards`` Parquet files; reuses files already there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"shard-{i:03d}-of-{shards:03d}.parquet" for i in range(shards)]
    marker = out_dir / f"_complete_{n_docs}_{seed}"
    if marker.exists():
        return paths
    rows = list(scaled_rows(n_docs, seed))
    per = -(-len(rows) // shards)
    for i, path in enumerate(paths):
        chunk = rows[i * per : (i + 1) * per]
        table = pa.table({"id": [r[0] for r in chunk], "text": [r[1] for r in chunk], "source": [r[2] for r in chunk]})
        pq.write_table(table, path, row_group_size=row_group_rows)
    marker.write_text("")
    return paths
