import pyarrow as pa

from curate.classifiers.text import content_hashes, exact_dedup_hashes, normalize_for_exact_dedup


def test_case_space_and_unicode_forms_normalize_together():
    texts = pa.array(
        [
            "Hello   World\n",
            "hello world",
            "HELLO\u00a0WORLD",  # no-break space
            "\uff28ello world",  # fullwidth H (NFKC folds it)
            "hello\u3000world ",  # ideographic space
            "hello worlds",
        ]
    )
    norm = normalize_for_exact_dedup(texts).to_pylist()
    assert norm[:5] == ["hello world"] * 5
    assert norm[5] == "hello worlds"
    hashes = content_hashes(normalize_for_exact_dedup(texts))
    assert len(set(hashes[:5])) == 1 and hashes[5] != hashes[0]
    assert len(hashes[0]) == 16  # 128-bit digests
    assert exact_dedup_hashes(texts) == hashes  # the fused path the stage uses


def test_null_text_hashes_without_error():
    assert content_hashes(normalize_for_exact_dedup(pa.array([None, "a"], pa.string())))[0] == b""
    assert exact_dedup_hashes(pa.array([None, "a"], pa.string()))[0] == b""


EDGE_TEXTS = [
    "ΟΔΟΣ ΚΑΙ ΔΡΟΜΟΣ",
    "οδος και δρομος",
    "İstanbul",
    "a\x1cb\x1dc\x1ed\x1fe",
    "x\u0085y\u2028z\u2029w",
    "  lead and trail \t\n",
    "",
    "\u3000",
    "ﬁne ﬂow",
    "Ⅻ ½",
    "e\u0301",
    "中文，标点。",
    "tab\tand\u00a0nbsp",
]


def test_batch_normalization_is_the_one_text_definition(real_docs_path):
    """The compiled batch path equals the per-text definition on every real document."""
    import pyarrow.parquet as pq

    from curate.classifiers.text import normalize_one_for_exact_dedup

    texts = pq.read_table(real_docs_path, columns=["text"]).column(0).combine_chunks()
    texts = pa.concat_arrays([texts, pa.array(EDGE_TEXTS, pa.string())])
    assert normalize_for_exact_dedup(texts).to_pylist() == [normalize_one_for_exact_dedup(t) for t in texts.to_pylist()]


def test_case_forms_of_greek_and_turkish_agree():
    hashes = exact_dedup_hashes(pa.array(EDGE_TEXTS[:3] + ["istanbul"], pa.string()))
    assert hashes[0] == hashes[1]  # final sigma folded: upper and lower case forms are one text
    assert hashes[2] == hashes[3]
    assert normalize_for_exact_dedup(pa.array(EDGE_TEXTS[3:6])).to_pylist() == [
        "a b c d e",
        "x y z w",
        "lead and trail",
    ]
