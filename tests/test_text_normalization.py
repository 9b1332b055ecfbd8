import pyarrow as pa

from curate.classifiers.text import content_hashes, exact_dedup_hashes, normalize_for_exact_dedup


def test_case_space_and_unicode_forms_normalize_together():
    texts = pa.array([
        "Hello   World\n",
        "hello world",
        "HELLO\u00a0WORLD",          # no-break space
        "\uff28ello world",          # fullwidth H (NFKC folds it)
        "hello\u3000world ",         # ideographic space
        "hello worlds",
    ])
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
