"""Compiled (numba) tokenizers and token hashes over normalized Arrow string buffers.

What it holds: the code-point classes (``code_point_classes``) and the
near-dedup / quality tokenizer (``token_spans``), the token hash
(``hash_spans``, its pure-Python twin ``token_hash``, and the inline FNV-1a
step and 64-bit finalizer, ``fnv1a_step`` and ``mix64``, that the MinHash and
feature kernels import), the decontamination tokenizer that deletes
punctuation and symbols (``deleting_classes``, ``deleting_token_hashes``),
and the rolling n-gram probe of the decontamination index (``gram_owners``).
Inputs are ``normalize_kernels``' output (NFKC, lower-cased).

Why compiled: an Arrow-compute chain (regex punctuation replace, script
detection, whitespace split, a Python hash call per distinct token) makes a
string per token; one pass over the UTF-8 bytes with a code-point class table
makes the hashes directly.  Everything is integer arithmetic, so results are
identical on every machine and runner.

Code-point classes (``code_point_classes``): 0 separator (Unicode whitespace,
punctuation ``\\p{P}``, symbols ``\\p{S}``), 1 word character, 2 word character
of a script written without spaces (Han, Hiragana, Katakana, Hangul, Thai).
The table is built from Python's ``unicodedata`` (so it follows the Unicode
version of the worker's Python; pin the Python version across runners, as for
any other dependency).  The decontamination classes are read off Arrow itself
(``deleting_classes``), so they match ``ngram_index.tokenize``'s Arrow path.

Token hash: FNV-1a 64 over the token's UTF-8 bytes, then the MurmurHash3 64-bit
finalizer (FNV alone mixes short strings poorly).  ``token_hash`` is the
pure-Python twin, used to hand datasketch the very same hash function.

numba's on-disk cache does not notice a change in another file
(numba/numba#1833): after editing ``fnv1a_step`` or ``mix64``, delete the
cached ``*.nbi``/``*.nbc`` files of ``minhash_kernels`` and
``feature_kernels`` under ``classifiers/__pycache__``, which inline them.
"""

from __future__ import annotations

import functools
import unicodedata

import numba
import numpy as np

from curate.classifiers.normalize_kernels import TABLE_SIZE, decode_utf8

SEPARATOR, WORD, SPACELESS = 0, 1, 2
# A document is split into characters when space-less-script characters make
# up at least this share of its word characters (CJK text mixed with a few
# Latin words or numbers still counts as CJK).
SPACELESS_SHARE = 0.3

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_U64 = (1 << 64) - 1

# Han (incl. radicals, extensions, compatibility), Hiragana, Katakana, Hangul, Thai.
_SPACELESS_RANGES = [
    (0x0E00, 0x0E7F),
    (0x1100, 0x11FF),
    (0x2E80, 0x2FDF),
    (0x3005, 0x3007),
    (0x3021, 0x3029),
    (0x3038, 0x303B),
    (0x3041, 0x30FF),
    (0x3130, 0x318F),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xA960, 0xA97F),
    (0xAC00, 0xD7FF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFFDC),
    (0x20000, 0x3134F),
]


@functools.lru_cache(maxsize=1)
def code_point_classes() -> np.ndarray:
    """uint8 class of every code point below ``TABLE_SIZE`` (others are words)."""
    table = np.ones(TABLE_SIZE, dtype=np.uint8)
    for cp in range(TABLE_SIZE):
        ch = chr(cp)
        if unicodedata.category(ch)[0] in "PS" or ch.isspace():
            table[cp] = SEPARATOR
    for lo, hi in _SPACELESS_RANGES:
        block = table[lo : hi + 1]
        block[block == WORD] = SPACELESS
    return table


def token_hash(token: str) -> int:
    """FNV-1a 64 + fmix64 of the token's UTF-8 bytes (the kernels' token hash)."""
    h = int(FNV_OFFSET)
    for byte in token.encode("utf-8"):
        h = ((h ^ byte) * int(_FNV_PRIME)) & _U64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _U64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _U64
    return h ^ (h >> 33)


@numba.njit(cache=True, inline="always")
def fnv1a_step(h, byte):
    """One FNV-1a 64 step."""
    return (h ^ np.uint64(byte)) * _FNV_PRIME


@numba.njit(cache=True, inline="always")
def mix64(h):
    """MurmurHash3's 64-bit finalizer."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


@numba.njit(cache=True, inline="always")
def _class(table, cp):
    return table[cp] if cp < table.shape[0] else 1


@numba.njit(cache=True, nogil=True)
def _char_mode_and_counts(data, offsets, table, share):
    """Per document: split into characters?  And how many tokens that gives."""
    n = offsets.shape[0] - 1
    char_mode = np.zeros(n, dtype=np.bool_)
    counts = np.zeros(n, dtype=np.int64)
    for d in range(n):
        i, end = offsets[d], offsets[d + 1]
        words = 0
        chars = 0
        spaceless = 0
        prev_word = False
        while i < end:
            cp, size = decode_utf8(data, i)
            c = _class(table, cp)
            if c != 0:
                chars += 1
                if c == 2:
                    spaceless += 1
                if not prev_word:
                    words += 1
                prev_word = True
            else:
                prev_word = False
            i += size
        if chars > 0 and spaceless >= share * chars:
            char_mode[d] = True
            counts[d] = chars
        else:
            counts[d] = words
    return char_mode, counts


@numba.njit(cache=True, nogil=True)
def _fill_spans(data, offsets, table, char_mode, token_offsets, starts, ends):
    n = offsets.shape[0] - 1
    for d in range(n):
        i, end = offsets[d], offsets[d + 1]
        t = token_offsets[d]
        in_word = False
        while i < end:
            cp, size = decode_utf8(data, i)
            c = _class(table, cp)
            if c == 0:
                if in_word:
                    ends[t] = i
                    t += 1
                    in_word = False
            elif char_mode[d]:
                starts[t] = i
                ends[t] = i + size
                t += 1
            elif not in_word:
                starts[t] = i
                in_word = True
            i += size
        if in_word:
            ends[t] = end
            t += 1


def token_spans(data: np.ndarray, offsets: np.ndarray, share: float = SPACELESS_SHARE):
    """Byte spans of every token: (starts, ends, per-document token offsets).

    Tokens are maximal runs of word characters, or single word characters in
    documents of space-less scripts (see ``SPACELESS_SHARE``).
    """
    table = code_point_classes()
    char_mode, counts = _char_mode_and_counts(data, offsets, table, share)
    token_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=token_offsets[1:])
    starts = np.empty(token_offsets[-1], dtype=np.int64)
    ends = np.empty(token_offsets[-1], dtype=np.int64)
    _fill_spans(data, offsets, table, char_mode, token_offsets, starts, ends)
    return starts, ends, token_offsets


@numba.njit(cache=True, nogil=True)
def hash_spans(data, starts, ends):
    """``token_hash`` of every byte span ``data[starts[i]:ends[i]]``."""
    out = np.empty(starts.shape[0], dtype=np.uint64)
    for t in range(starts.shape[0]):
        h = FNV_OFFSET
        for i in range(starts[t], ends[t]):
            h = fnv1a_step(h, data[i])
        out[t] = mix64(h)
    return out


# Classes of ``deleting_classes``: a kept character, a separator (whitespace), a
# deleted character (punctuation or symbol: removed, so it joins its neighbours);
# a kept character that Arrow's ``utf8_is_numeric`` calls numeric also has NUMERIC.
KEEP, SPACE, DELETE, NUMERIC = 0, 1, 2, 0x80


@functools.lru_cache(maxsize=1)
def deleting_classes() -> np.ndarray:
    """uint8 class per code point below ``TABLE_SIZE`` for the decontamination tokenizer.

    Read off Arrow itself (which chars ``utf8_split_whitespace`` splits on, which
    ``[\\p{P}\\p{S}]`` matches in RE2), so the compiled path hashes exactly the
    tokens that ``ngram_index.tokenize``'s Arrow kernels produce."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cps = [cp for cp in range(TABLE_SIZE) if not 0xD800 <= cp <= 0xDFFF]  # surrogates never occur in UTF-8
    chars = pa.array([chr(cp) for cp in cps], pa.string())
    deleted = pc.match_substring_regex(chars, pattern=r"^[\p{P}\p{S}]$").to_numpy(zero_copy_only=False)
    split = pc.equal(
        pc.list_value_length(pc.utf8_split_whitespace(pc.binary_join_element_wise("a", chars, "b", ""))), 2
    )
    numeric = pc.utf8_is_numeric(chars).to_numpy(zero_copy_only=False)
    table = np.full(TABLE_SIZE, KEEP, dtype=np.uint8)
    idx = np.array(cps)
    table[idx[numeric]] |= NUMERIC
    table[idx[split.to_numpy(zero_copy_only=False)]] = SPACE
    table[idx[deleted]] = DELETE
    return table


@numba.njit(cache=True, nogil=True)
def _deleting_tokens(data, offsets, table, token_offsets, out, numeric_out, fill):
    """One pass per document: token counts (``fill`` False), or the token hashes
    written from ``token_offsets`` on (``fill`` True), and whether each token is
    all numeric characters when ``numeric_out`` is not empty."""
    n = offsets.shape[0] - 1
    counts = np.zeros(n, dtype=np.int64)
    flags = numeric_out.shape[0] > 0
    for d in range(n):
        i, end = offsets[d], offsets[d + 1]
        t = token_offsets[d] if fill else 0
        in_token = False
        all_numeric = True
        h = FNV_OFFSET
        while i < end:
            cp, size = decode_utf8(data, i)
            c = table[cp] if cp < table.shape[0] else KEEP
            if c == SPACE:
                if in_token and fill:
                    out[t] = mix64(h)
                    if flags:
                        numeric_out[t] = all_numeric
                    t += 1
                in_token = False
            elif (c & 0x7F) == KEEP:
                if not in_token:
                    counts[d] += 1
                    h = FNV_OFFSET
                    in_token = True
                    all_numeric = True
                if fill:
                    all_numeric = all_numeric and (c & NUMERIC) != 0
                    for j in range(i, i + size):
                        h = fnv1a_step(h, data[j])
            i += size
        if in_token and fill:
            out[t] = mix64(h)
            if flags:
                numeric_out[t] = all_numeric
    return counts


def deleting_token_hashes(data: np.ndarray, offsets: np.ndarray, numeric: bool = False):
    """``token_hash`` of every token when punctuation and symbols are deleted and
    whitespace splits: (hashes, per-document token offsets), no strings made;
    with ``numeric``, also a bool per token: all its characters are numeric
    (Arrow's ``utf8_is_numeric``)."""
    table = deleting_classes()
    no_offsets, no_out = np.zeros(len(offsets), dtype=np.int64), np.zeros(0, dtype=np.uint64)
    no_flags = np.zeros(0, dtype=np.bool_)
    counts = _deleting_tokens(data, offsets, table, no_offsets, no_out, no_flags, False)
    token_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=token_offsets[1:])
    out = np.empty(token_offsets[-1], dtype=np.uint64)
    flags = np.zeros(token_offsets[-1], dtype=np.bool_) if numeric else no_flags
    _deleting_tokens(data, offsets, table, token_offsets, out, flags, True)
    return (out, token_offsets, flags) if numeric else (out, token_offsets)


@numba.njit(cache=True, nogil=True)
def gram_owners(hashes, offsets, k, poly, poly_inv, bits, shift, keys, owners):
    """Owner (index into ``owners``) of every token ``k``-gram, or -1 when its hash is not in ``keys``.

    The gram hash is ``minhash.shingle_hashes``'s 64-bit polynomial
    ``sum_j t_j * poly^j``, rolled along the document in O(1) per position
    (``poly`` is odd, so ``poly_inv`` is its inverse mod 2^64).  A bitmap of
    the keys' top bits (``bits`` >> ``shift``) answers most misses with one
    probe; the rest are binary-searched in the sorted ``keys``.  Documents with
    fewer than ``k`` tokens have no gram.  Returns (owner per gram, per-document
    gram offsets)."""
    n_docs = offsets.shape[0] - 1
    gram_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    for d in range(n_docs):
        length = offsets[d + 1] - offsets[d]
        gram_offsets[d + 1] = gram_offsets[d] + (length - k + 1 if length >= k else 0)
    out = np.full(gram_offsets[n_docs], -1, dtype=np.int64)
    top_power = np.uint64(1)
    for _ in range(k - 1):
        top_power *= poly
    n_keys = keys.shape[0]
    for d in range(n_docs):
        lo, hi = offsets[d], offsets[d + 1]
        if hi - lo < k:
            continue
        acc = np.uint64(0)
        power = np.uint64(1)
        for j in range(k):
            acc += hashes[lo + j] * power
            power *= poly
        g = gram_offsets[d]
        for start in range(lo, hi - k + 1):
            if start > lo:
                acc = (acc - hashes[start - 1]) * poly_inv + hashes[start + k - 1] * top_power
            top = acc >> shift
            if (bits[top >> np.uint64(3)] >> (top & np.uint64(7))) & 1:
                a, b = 0, n_keys
                while a < b:
                    m = (a + b) // 2
                    if keys[m] < acc:
                        a = m + 1
                    else:
                        b = m
                if a < n_keys and keys[a] == acc:
                    out[g] = owners[a]
            g += 1
    return out, gram_offsets
