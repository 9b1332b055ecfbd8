"""classifiers.fasttext_lid against fastText's own C++ predict (the fasttext-predict binding)."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.classifiers.fasttext_lid import FastTextModel, UnsupportedModel, fasttext_hash
from curate.classifiers.langid import LanguageIdentifier, ModelFileError, default_model_path, prepare
from curate.classifiers.minhash import string_buffers
from curate.pipelines.build import sample_corpus_path

EDGE_CASES = [
    "hello",
    "__label__en hello world",
    "__label__fr",
    "</s> bonjour tout le monde",
    "bonjour </s> hello there",
    "日本語のテキストです",
    "a\tb\x0bc\x0cd e",
    "x" * 3000,
    "Ünïcödé wörds ñ ç",
    "🙂🙂 emoji only 🙂",
    "Привет, как дела? Всё хорошо.",
    "code_like_identifier = other_identifier + 1",
]


@pytest.fixture(scope="module")
def models():
    import fasttext  # the fasttext-predict binding: the reference

    return FastTextModel(default_model_path()), fasttext.load_model(default_model_path()).f


def _assert_same_as_fasttext(models, texts: list[str]):
    ours, reference = models
    prepared = [prepare(t, 5000) for t in texts]
    data, offsets = string_buffers(pa.array(prepared, pa.string()))
    labels, probs = ours.predict_top1(data, offsets)
    compared = 0
    for i, text in enumerate(prepared):
        expected = reference.predict(text + "\n", 1, 0.0, "replace")
        if not expected:
            assert labels[i] == -1, text[:80]
            continue
        prob, label = expected[0]
        assert ours.labels[labels[i]] == label[len("__label__") :], text[:80]
        assert probs[i] == pytest.approx(prob, rel=1e-6, abs=1e-9), text[:80]
        compared += 1
    return compared


def test_fasttext_hash_is_fnv1a_over_signed_bytes():
    # values from fastText's Dictionary::hash (uint32 h ^= int8 byte; h *= 16777619)
    assert fasttext_hash(b"") == 2166136261
    assert fasttext_hash(b"a") == 0xE40C292C
    # a byte >= 0x80 is sign-extended before the xor, which a plain FNV-1a would not do
    plain = ((2166136261 ^ 0xC3) * 16777619) & 0xFFFFFFFF
    assert fasttext_hash(b"\xc3") != plain


def test_same_labels_and_probabilities_as_fasttext_on_the_sample_corpus_and_edge_cases(models):
    texts = pq.read_table(sample_corpus_path(), columns=["text"]).column("text").to_pylist()
    assert _assert_same_as_fasttext(models, texts + EDGE_CASES) >= len(texts)


def test_same_labels_and_probabilities_as_fasttext_on_the_real_documents(models, real_docs_path):
    texts = pq.read_table(real_docs_path, columns=["text"]).column("text").to_pylist()
    assert _assert_same_as_fasttext(models, texts) == len(texts)


def test_identifier_reads_arrow_in_place_and_lists_alike():
    texts = ["The cat sat on the mat.", None, "Le chat est sur le tapis.", "Der Hund schläft im Garten."]
    model = LanguageIdentifier()
    from_arrow = model.predict(pa.array(texts, pa.string()))
    from_list = model.predict([t or "" for t in texts])
    assert from_arrow[0] == from_list[0] == ["en", "und", "fr", "de"]
    np.testing.assert_array_equal(from_arrow[1], from_list[1])


def _header(version=12, loss=1, word_ngrams=1) -> bytes:
    return struct.pack("<ii", 793712314, version) + struct.pack(
        "<12id", 16, 5, 5, 1, 5, word_ngrams, loss, 3, 2000000, 2, 4, 100, 1e-4
    )


@pytest.mark.parametrize(
    "header, reason",
    [
        (_header(version=11), "version 11"),
        (_header(loss=2), "hierarchical softmax"),
        (_header(word_ngrams=2), "wordNgrams 2"),
    ],
)
def test_models_it_cannot_reproduce_are_refused_with_the_reason(tmp_path, header, reason):
    path = tmp_path / "model.bin"
    path.write_bytes(header + b"\0" * 64)
    with pytest.raises(UnsupportedModel, match=reason):
        FastTextModel(str(path))
    with pytest.raises(ModelFileError, match=reason):
        LanguageIdentifier(str(path))
