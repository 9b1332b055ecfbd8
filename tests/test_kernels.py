"""The compiled kernels against plain-Python definitions of the same thing.

One file for the four kernel modules, which share its texts and its definition
of the tokenizer: ``normalize_kernels`` (NFKC, lower-casing, code-point counts),
``token_kernels`` (tokenizers, token hashes), ``minhash_kernels`` (signatures)
and ``feature_kernels`` (quality features)."""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest

from curate.classifiers import feature_kernels, minhash, minhash_kernels, normalize_kernels, quality, token_kernels

TEXTS = [
    "",
    "   ",
    "Hello, World! hello",
    "don't stop -- it's 3.5 km",
    "Ünïcödé ﬁne Ⅻ",
    "今天天气很好，我们去公园。",
    "mixed 中文 text",
    "tab\tand\nnewline\u00a0nbsp",
    "a",
    "x" * 5,
]


def _py_tokens(text: str) -> list[str]:
    """The tokenizer's definition: NFKC, lower-case, P/S/whitespace separate; CJK-heavy text in characters."""
    text = unicodedata.normalize("NFKC", text).lower()
    table = token_kernels.code_point_classes()
    cls = [table[ord(c)] if ord(c) < len(table) else 1 for c in text]
    word_chars = sum(c != 0 for c in cls)
    if word_chars and sum(c == 2 for c in cls) >= token_kernels.SPACELESS_SHARE * word_chars:
        return [ch for ch, c in zip(text, cls) if c != 0]
    tokens, current = [], ""
    for ch, c in zip(text, cls):
        if c == 0:
            if current:
                tokens.append(current)
            current = ""
        else:
            current += ch
    return tokens + ([current] if current else [])


def test_tokenizer_matches_its_definition():
    assert minhash.tokenize(pa.array(TEXTS)).to_pylist() == [_py_tokens(t) for t in TEXTS]
    assert minhash.tokenize(pa.array(["don't stop"])).to_pylist() == [["don", "t", "stop"]]


def test_token_hashes_match_the_python_twin():
    hashes, offsets = minhash.text_token_hashes(pa.array(TEXTS))
    expected = [token_kernels.token_hash(tok) for t in TEXTS for tok in _py_tokens(t)]
    assert hashes.tolist() == expected
    assert np.diff(offsets).tolist() == [len(_py_tokens(t)) for t in TEXTS]


def test_hashed_ngram_counts_match_a_python_reference():
    params = quality.HashingParams(n_features=97, ngram_max=3)  # small and not a power of two
    counts = params.transform(pa.array(TEXTS)).toarray()
    mask = (1 << 64) - 1
    for row, text in zip(counts, TEXTS):
        hashes = [token_kernels.token_hash(tok) for tok in _py_tokens(text)]
        expected = np.zeros(97)
        for k in range(1, 4):
            for i in range(len(hashes) - k + 1):
                g = hashes[i]
                for h in hashes[i + 1 : i + k]:
                    g = (g * 0x9E3779B97F4A7C15 + h) & mask
                if k > 1:
                    g = int(minhash_kernels.fmix64(np.array([g], dtype=np.uint64))[0])
                expected[g % 97] += 1
        np.testing.assert_array_equal(row, expected, err_msg=text)


def test_word_counts_are_pythons_split(real_docs_path):
    texts = pq.read_table(real_docs_path).column("text").combine_chunks()[:400]
    words, distinct = feature_kernels.word_counts(
        *minhash.normalized_buffers(texts), normalize_kernels.whitespace_table()
    )
    normalized = [unicodedata.normalize("NFKC", t).lower() for t in texts.to_pylist()]
    assert words.tolist() == [len(t.split()) for t in normalized]
    assert distinct.tolist() == [len(set(t.split())) for t in normalized]


@pytest.mark.parametrize("bits", [32, 64])
def test_signatures_do_not_depend_on_batching(bits):
    hasher = minhash.MinHasher(num_perm=16, bits=bits)
    whole = hasher.signatures(pa.array(TEXTS))
    parts = np.concatenate([hasher.signatures(pa.array(TEXTS[i : i + 3])) for i in range(0, len(TEXTS), 3)])
    np.testing.assert_array_equal(whole, parts)


def test_nfkc_skip_agrees_with_unicodedata(real_docs_path):
    """Documents the stable-character table lets skip NFKC are really NFKC already."""
    texts = pq.read_table(real_docs_path, columns=["text"]).column(0).combine_chunks()
    tricky = [
        "e\u0301",
        "\u1100\u1161",
        "\uac00\u11a8",
        "\ufb01",
        "\uff21",
        "a\u0301\u0323",
        "\u0f73",
        "x\u0cbf\u0cd5",
        "caf\u00e9",
        "\u00bd",
        "\u2460",
        "\u3000x",
        "plain",
        "Tag\U000e0041E\u0301X",
        "Tag\U000e0041\uff21",
        "\U0001d400BC",
    ]
    texts = pa.concat_arrays([texts, pa.array(tricky, pa.string())])
    data, offsets = minhash.string_buffers(texts)
    action = normalize_kernels.nfkc_map_table()[0]
    only_stable = np.where(action == -1, -1, -2).astype(np.int32)  # any other code point: not skipped
    needs = normalize_kernels.rewritten_sizes(data, offsets, only_stable, np.zeros(1, dtype=np.int64)) < 0
    py = texts.to_pylist()
    skipped = [t for t, n in zip(py, needs) if not n]
    assert all(unicodedata.is_normalized("NFKC", t) for t in skipped)
    assert sum(needs[-len(tricky) :]) == len(tricky) - 2  # only "café" (composed) and "plain" skip
    reference = pa.compute.utf8_lower(pa.array([unicodedata.normalize("NFKC", t) for t in py], pa.string()))
    assert minhash.normalize_for_shingles(texts).equals(reference)


def test_compiled_nfkc_equals_unicodedata_on_every_replaced_character_in_context():
    """Every table-replaced character, alone, doubled, between letters and next to
    random others (stable, replaced, combining, jamo), normalizes as ``unicodedata``."""
    action, _, _ = normalize_kernels.nfkc_map_table()
    replaced = [chr(cp) for cp in np.flatnonzero(action >= 0).tolist()]
    stable = [chr(cp) for cp in np.flatnonzero(action == -1)[::97].tolist() if not 0xD800 <= cp <= 0xDFFF]
    slow = [chr(cp) for cp in np.flatnonzero(action == -2).tolist() if not 0xD800 <= cp <= 0xDFFF]
    assert len(replaced) > 3000 and "\u2026" in replaced and "\uff0c" in replaced and "\u0301" in slow
    rng = random.Random(7)
    texts = [c for c in replaced] + [c + c for c in replaced] + [f"a{c}b" for c in replaced]
    pool = replaced + stable + slow[:400] + list("aeAZ \n")
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(40_000)]
    texts += ["".join(rng.choice(replaced + stable) for _ in range(rng.randint(1, 12))) for _ in range(40_000)]
    texts += [
        "".join(rng.choice(pool + list("ÀÉÎÕÜΣΩДЖ")) for _ in range(rng.randint(1, 12))).upper() for _ in range(20_000)
    ]
    expected = [unicodedata.normalize("NFKC", t) for t in texts]
    assert minhash.nfkc(pa.array(texts, pa.string())).to_pylist() == expected
    # the one-pass NFKC + lower-casing (tables for both) equals unicodedata then Arrow's lower
    lowered = pa.compute.utf8_lower(pa.array(expected, pa.string()))
    assert minhash.normalize_for_shingles(pa.array(texts, pa.string())).equals(lowered)
    mixed = pa.array(texts[-60_000:-20_000], pa.string())
    sizes = normalize_kernels.rewritten_sizes(*minhash.string_buffers(mixed), *normalize_kernels.nfkc_map_table()[::2])
    assert (sizes >= 0).all()  # the compiled pass did the work, no text went to unicodedata


def test_decontamination_token_hashes_are_the_arrow_tokens_hashed(real_docs_path):
    """The compiled deleting tokenizer hashes exactly the tokens of ``ngram_index.tokenize``
    (Arrow regex delete + whitespace split), on every real document and on edge cases."""
    from curate.classifiers import ngram_index

    texts = pq.read_table(real_docs_path, columns=["text"]).column(0).combine_chunks()
    edge = [
        "",
        " - ",
        "don't  stop",
        "3.5km/h",
        "a\u00a0b\u2003c\u3000d",
        "x\u200by",
        "«quoted» — dash",
        "tab\tend\n",
        "emoji 🙂 here",
        "$100 + 5% = ?",
        "中文，标点。",
        "\u1680ogham\u180evowel",
        "a\x1cb\x1fc",
        "3 4,5 ½ Ⅻ 二十 ٣٤ 1st x2 ①②",
    ]
    texts = pa.concat_arrays([texts, pa.array(edge, pa.string())])
    hashes, offsets = ngram_index.text_token_hashes(texts)
    tokens = ngram_index.tokenize(texts)
    expected_hashes, expected_offsets = minhash.token_hashes(tokens)
    np.testing.assert_array_equal(offsets, expected_offsets)
    np.testing.assert_array_equal(hashes, expected_hashes)
    # the numeric flag per token (the index leaves out mostly-numeric n-grams) is Arrow's
    _, _, numeric = token_kernels.deleting_token_hashes(*minhash.normalized_buffers(texts), numeric=True)
    expected_numeric = pa.compute.utf8_is_numeric(pa.compute.list_flatten(tokens)).to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(numeric, expected_numeric)
    assert 1000 < numeric.sum() < len(numeric) // 2
    assert ngram_index.tokenize(pa.array(["Don't STOP-now, 3.5"])).to_pylist() == [["dont", "stopnow", "35"]]
    assert ngram_index.tokenize(pa.array(["", " - ", "a -- b"])).to_pylist() == [[], [], ["a", "b"]]


def _markdown_fuzz(n: int, seed: int = 3) -> list[str]:
    """Random markdown-ish strings from the pieces the six patterns care about."""
    import random

    rng = random.Random(seed)
    pieces = [
        "#",
        "##",
        "#######",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n",
        "\r\n",
        "\x0b",
        "\x0c",
        "-",
        "*",
        "+",
        "•",
        "1.",
        "12)",
        "3",
        ".",
        "!",
        "?",
        "...",
        "```",
        "``",
        "`",
        "a",
        "word",
        "Understanding",
        "internationalization",
        "abcdefghi1",
        "_x",
        "é",
        "naïveté",
        "中文",
        "x_longwordhere",
        "\u00a0",
        "\u2003",
    ]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def test_markdown_counts_are_the_re2_patterns_counts(real_docs_path):
    """The compiled structural counts equal Arrow's count_substring_regex of the
    patterns that define them, on every real document and on fuzzed markdown."""
    texts = pq.read_table(real_docs_path, columns=["text"]).column(0).combine_chunks()
    texts = pa.concat_arrays([texts, pa.array(_markdown_fuzz(5000), pa.string())])
    got = feature_kernels.markdown_counts(*minhash.string_buffers(texts))
    for col, (name, pattern) in enumerate(quality.MARKDOWN_PATTERNS.items()):
        expected = pa.compute.count_substring_regex(texts, pattern=pattern).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(got[:, col] != expected)
        assert len(bad) == 0, (name, [texts[i].as_py() for i in bad[:3]], got[bad[:3], col], expected[bad[:3]])
    assert got[:, 2].sum() > 0 and got[:, 3].sum() > 0 and got[:, 1].sum() > 0  # the real textbooks have them


def test_total_chars_counts_what_arrow_counts_per_document():
    """Code points summed, on slices, with nulls and with bytes that are not UTF-8
    (input_check counts texts before repairing them)."""
    import random

    import pyarrow as pa
    import pyarrow.compute as pc

    from curate.classifiers.text import char_lengths, total_chars

    rng = random.Random(1)
    alphabet = "aé€😀ß \n中\u0301"
    for trial in range(300):
        texts = [
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30))) for _ in range(rng.randrange(0, 20))
        ]
        if trial % 5 == 0:  # not UTF-8: a stray continuation byte and 0xff
            raw = [t.encode() + bytes([0x80, 0xFF]) for t in texts]
            arr = pa.Array.from_buffers(pa.string(), len(raw), pa.array(raw, pa.binary()).buffers())
        else:
            arr = pa.array([None if trial % 7 == 0 and i == 1 else t for i, t in enumerate(texts)], pa.string())
        if trial % 3 == 0 and len(arr) > 2:
            arr = arr.slice(1, len(arr) - 2)
        assert total_chars(arr) == (pc.sum(char_lengths(arr)).as_py() or 0), trial
    assert total_chars(pa.array(["héllo", "😀"], pa.large_string())) == 6
