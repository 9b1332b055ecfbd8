"""Compiled (numba) quality-classifier features over Arrow string buffers and token hashes.

What it holds: the hashed token n-gram features of ``classifiers.quality``
(``hashed_ngram_csr`` for training, ``tfidf_dot`` for scoring: the TF-IDF row
dotted with the model's coefficients without a sparse matrix), and its
per-document counts: whitespace words and distinct words (``word_counts``),
ASCII digits, upper-case letters and '!'/'?' (``ascii_class_counts``), and
the six markdown/structure patterns counted exactly as Arrow's RE2 regex
kernels count them (``markdown_counts``, tested equal to them).

Why compiled: these features are computed for every document the quality
stage scores; one pass over the bytes or token hashes per document replaces
Arrow's six regex passes, Python word sets and a per-batch sparse matrix.
Token hashes come from ``token_kernels`` (the near-dedup tokenizer over
``normalize_kernels``' output), whose FNV-1a step and 64-bit finalizer these
kernels inline.
"""

from __future__ import annotations

import numba
import numpy as np

from curate.classifiers.normalize_kernels import decode_utf8
from curate.classifiers.token_kernels import FNV_OFFSET, fnv1a_step, mix64


@numba.njit(cache=True, nogil=True)
def _ngram_bucket(hashes, i, k, nf):
    """Bucket of the k-gram at token i: the unigram's hash mod nf, a longer gram's
    fmix64 of ``sum_j t_j * P^(k-1-j)`` mod nf."""
    if k == 1:
        return np.int64(hashes[i] % nf)
    g = hashes[i]
    for j in range(1, k):
        g = g * np.uint64(0x9E3779B97F4A7C15) + hashes[i + j]
    return np.int64(mix64(g) % nf)


@numba.njit(cache=True, nogil=True)
def hashed_ngram_csr(hashes, offsets, ngram_max, n_features):
    """CSR (indptr, indices, counts) of hashed token n-grams (1..ngram_max) per document.

    Unigram bucket: ``hash % n_features``; a longer n-gram's: fmix64 of the
    polynomial ``sum_j t_j * P^(k-1-j)`` of its token hashes, mod n_features.
    Indices are sorted within each row, counts summed (what scipy's
    ``sum_duplicates`` would give, without building a COO matrix first).
    """
    n_docs = offsets.shape[0] - 1
    nf = np.uint64(n_features)
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    capacity = 0
    for d in range(n_docs):
        n = offsets[d + 1] - offsets[d]
        for k in range(1, ngram_max + 1):
            if n >= k:
                capacity += n - k + 1
    indices = np.empty(capacity, dtype=np.int32)
    counts = np.empty(capacity, dtype=np.float32)
    out = 0
    for d in range(n_docs):
        lo, hi = offsets[d], offsets[d + 1]
        n = hi - lo
        size = 0
        for k in range(1, ngram_max + 1):
            if n >= k:
                size += n - k + 1
        buckets = np.empty(size, dtype=np.int64)
        b = 0
        for k in range(1, ngram_max + 1):
            for i in range(lo, hi - k + 1):
                buckets[b] = _ngram_bucket(hashes, i, k, nf)
                b += 1
        buckets.sort()
        i = 0
        while i < size:
            j = i
            while j < size and buckets[j] == buckets[i]:
                j += 1
            indices[out] = buckets[i]
            counts[out] = j - i
            out += 1
            i = j
        indptr[d + 1] = out
    return indptr, indices[:out], counts[:out]


@numba.njit(cache=True, nogil=True)
def tfidf_dot(hashes, offsets, ngram_max, idf, coef):
    """Per document: ``x . coef`` where ``x`` is the L2-normalized sublinear TF-IDF
    row of ``hashed_ngram_csr`` (``log1p(count) * idf``, divided by its norm).

    Scoring needs only that dot product, so counts go into one dense scratch
    array and are read back in first-seen order: no per-document sort of every
    n-gram, no sparse matrices (sums in float64; the CSR path's float32 sums
    differ by up to ~1e-5 in the decision value, 6e-8 in the score)."""
    n_docs = offsets.shape[0] - 1
    n_features = idf.shape[0]
    nf = np.uint64(n_features)
    scratch = np.zeros(n_features, dtype=np.int32)
    out = np.zeros(n_docs, dtype=np.float64)
    for d in range(n_docs):
        lo, hi = offsets[d], offsets[d + 1]
        touched = np.empty((hi - lo) * ngram_max, dtype=np.int64)
        t = 0
        for k in range(1, ngram_max + 1):
            for i in range(lo, hi - k + 1):
                b = _ngram_bucket(hashes, i, k, nf)
                if scratch[b] == 0:
                    touched[t] = b
                    t += 1
                scratch[b] += 1
        dot = 0.0
        sq = 0.0
        for j in range(t):  # first-seen order: deterministic, no sort needed
            b = touched[j]
            w = np.log1p(np.float64(scratch[b])) * idf[b]
            dot += w * coef[b]
            sq += w * w
            scratch[b] = 0
        out[d] = dot / np.sqrt(sq) if sq > 0 else 0.0
    return out


@numba.njit(cache=True, nogil=True)
def word_counts(data, offsets, spaces):
    """Per document: whitespace-separated words and distinct words (by FNV-1a 64 of
    their bytes), i.e. ``len(t.split())`` and ``len(set(t.split()))``."""
    n_docs = offsets.shape[0] - 1
    words = np.zeros(n_docs, dtype=np.int64)
    distinct = np.zeros(n_docs, dtype=np.int64)
    for d in range(n_docs):
        i, end = offsets[d], offsets[d + 1]
        hashes = np.empty(end - i, dtype=np.uint64)
        n = 0
        h = FNV_OFFSET
        in_word = False
        while i < end:
            cp, size = decode_utf8(data, i)
            if cp < spaces.shape[0] and spaces[cp]:
                if in_word:
                    hashes[n] = h
                    n += 1
                    in_word = False
            else:
                if not in_word:
                    h = FNV_OFFSET
                    in_word = True
                for j in range(i, i + size):
                    h = fnv1a_step(h, data[j])
            i += size
        if in_word:
            hashes[n] = h
            n += 1
        words[d] = n
        if n:  # distinct hashes by open addressing in a table of >= 2n slots (no sort)
            size = 1
            while size < 2 * n:
                size *= 2
            slots = np.zeros(size, dtype=np.uint64)
            used = np.zeros(size, dtype=np.bool_)
            mask = np.uint64(size - 1)
            count = 0
            for j in range(n):
                h = hashes[j]
                s = mix64(h) & mask
                while used[s] and slots[s] != h:
                    s = (s + np.uint64(1)) & mask
                if not used[s]:
                    used[s] = True
                    slots[s] = h
                    count += 1
            distinct[d] = count
    return words, distinct


@numba.njit(cache=True, nogil=True)
def ascii_class_counts(data, offsets):
    """Per document: ASCII digits, ASCII upper-case letters, and '!' or '?'."""
    n_docs = offsets.shape[0] - 1
    out = np.zeros((n_docs, 3), dtype=np.int64)
    for d in range(n_docs):
        digits = 0
        upper = 0
        marks = 0
        for i in range(offsets[d], offsets[d + 1]):
            b = data[i]
            if 48 <= b <= 57:
                digits += 1
            elif 65 <= b <= 90:
                upper += 1
            elif b == 33 or b == 63:
                marks += 1
        out[d, 0] = digits
        out[d, 1] = upper
        out[d, 2] = marks
    return out


@numba.njit(cache=True, inline="always")
def _re2_space(b):
    """RE2's ``\\s``: [\\t\\n\\f\\r ] (not \\v)."""
    return b == 32 or b == 9 or b == 10 or b == 12 or b == 13


@numba.njit(cache=True, inline="always")
def _ascii_word(b):
    """RE2's ASCII ``\\w`` (what ``\\b`` looks at)."""
    return (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or b == 95


@numba.njit(cache=True, inline="always")
def _line_start(data, lo, i):
    return i == lo or data[i - 1] == 10


@numba.njit(cache=True, inline="always")
def _after_spaces_then_non_space(data, i, end):
    """``\\s+\\S`` at i: the end of the match (past the \\S character), or -1."""
    j = i
    while j < end and _re2_space(data[j]):
        j += 1
    if j == i or j >= end:
        return -1
    _, size = decode_utf8(data, j)
    return j + size


@numba.njit(cache=True, nogil=True)
def markdown_counts(data, offsets):
    """Per document, what Arrow's ``count_substring_regex`` (RE2) gives for
    ``quality``'s six structural patterns (``MARKDOWN_PATTERNS`` there, in
    column order), in one pass over the UTF-8 bytes: sentence ends, code
    fences, headers, list items, paragraph breaks, long words.  Counted as Arrow
    counts: leftmost non-overlapping matches, each search starting where the
    last match ended as if the text began there (so ``^`` also holds at a
    match's end: "``````" holds two fences), ``\\s`` = [\\t\\n\\f\\r ],
    ``\\b`` and ``\\w`` ASCII (a header's or list item's ``\\s+`` may run over
    line ends and swallow the next line's start)."""
    n_docs = offsets.shape[0] - 1
    out = np.zeros((n_docs, 6), dtype=np.int64)
    for d in range(n_docs):
        lo, end = offsets[d], offsets[d + 1]
        sentences = fences = headers = items = paragraphs = long_words = 0
        last_fence_end = -1
        # sentences, paragraphs, long words, fences: one scan over maximal runs
        i = lo
        while i < end:
            b = data[i]
            if b == 46 or b == 33 or b == 63:  # a run of [.!?]
                j = i
                while j < end and (data[j] == 46 or data[j] == 33 or data[j] == 63):
                    j += 1
                if j == end or _re2_space(data[j]):
                    sentences += 1
                i = j
            elif _re2_space(b):  # a whitespace run: paragraph break if it holds 2+ newlines
                j = i
                newlines = 0
                while j < end and _re2_space(data[j]):
                    if data[j] == 10:
                        newlines += 1
                    j += 1
                if newlines >= 2:
                    paragraphs += 1
                i = j
            elif _ascii_word(b):  # a \w run: a long word if all letters and 9+
                j = i
                letters_only = True
                while j < end and _ascii_word(data[j]):
                    c = data[j]
                    if not ((65 <= c <= 90) or (97 <= c <= 122)):
                        letters_only = False
                    j += 1
                if letters_only and j - i >= 9:
                    long_words += 1
                i = j
            else:
                if b == 96 and i + 2 < end and data[i + 1] == 96 and data[i + 2] == 96:
                    # ``` counts when the whitespace run before it starts at a ^:
                    # the text's start, a newline in it, or the previous match's end
                    q = i
                    has_newline = False
                    while q > lo and _re2_space(data[q - 1]):
                        q -= 1
                        if data[q] == 10:
                            has_newline = True
                    if q == lo or has_newline or last_fence_end >= q:
                        fences += 1
                        last_fence_end = i + 3
                    i += 3
                else:
                    i += 1
        # headers and list items: leftmost non-overlapping matches from line starts
        next_header = lo
        next_item = lo
        for r in range(lo, end):
            line_start = _line_start(data, lo, r)
            if (r == next_header or (line_start and r > next_header)) and data[r] == 35:
                j = r
                while j < end and data[j] == 35:
                    j += 1
                if j - r <= 6:
                    m = _after_spaces_then_non_space(data, j, end)
                    if m >= 0:
                        headers += 1
                        next_header = m
            if r == next_item or (line_start and r > next_item):
                j = r
                while j < end and _re2_space(data[j]):
                    j += 1
                k = -1
                if j < end and (data[j] == 45 or data[j] == 42 or data[j] == 43):
                    k = j + 1
                elif j + 2 < end and data[j] == 0xE2 and data[j + 1] == 0x80 and data[j + 2] == 0xA2:
                    k = j + 3
                elif j < end and 48 <= data[j] <= 57:
                    t = j
                    while t < end and 48 <= data[t] <= 57:
                        t += 1
                    if t < end and (data[t] == 46 or data[t] == 41):
                        k = t + 1
                if k >= 0:
                    m = _after_spaces_then_non_space(data, k, end)
                    if m >= 0:
                        items += 1
                        next_item = m
        out[d, 0] = sentences
        out[d, 1] = fences
        out[d, 2] = headers
        out[d, 3] = items
        out[d, 4] = paragraphs
        out[d, 5] = long_words
    return out
