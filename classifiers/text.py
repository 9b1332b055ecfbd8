"""Text normalization, hashing and size estimates shared by all stages.

Everything works on a whole batch (a ``pyarrow`` string array) at once.
Exact-dedup normalization is the near-dedup tokenizer's NFKC + lower-casing
(NFKC only for the documents a compiled scan finds it could change) and one
compiled whitespace pass; the hash reads the result's buffer directly.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

# English averages ~3.8 characters per BPE token (GPT-2/Llama tokenizers on web
# text), i.e. ~0.26 tokens per character; other scripts differ, which is why it
# is a configurable ratio and the funnel labels the figure an estimate.
DEFAULT_TOKENS_PER_CHAR = 0.26


def normalize_one_for_exact_dedup(text: str) -> str:
    """The definition, one text: NFKC, lower-case (Arrow's ``utf8_lower``, with
    final sigma folded to sigma), whitespace runs (``str.split()``'s: NBSP,
    ideographic space, ...) collapsed to one space, trimmed."""
    import unicodedata

    lowered = pc.utf8_lower(pa.array([unicodedata.normalize("NFKC", text)], pa.string()))[0].as_py()
    return " ".join(lowered.replace("\u03c2", "\u03c3").split())


def _collapsed_buffers(texts: pa.Array):
    """(data, offsets) of the normalized texts, from the compiled kernels: NFKC only
    where a character could change, Arrow's lower-casing, one whitespace pass."""
    from curate.classifiers import normalize_kernels  # lazy: numba kernels load only when normalizing
    from curate.classifiers.minhash import normalized_buffers

    return normalize_kernels.collapse_whitespace(*normalized_buffers(texts), normalize_kernels.whitespace_table())


def normalize_for_exact_dedup(texts: pa.Array) -> pa.Array:
    """``normalize_one_for_exact_dedup`` over a string array (nulls stay null).

    Two documents that differ only in case, Unicode compatibility forms or
    spacing normalize to the same string and so are exact duplicates.
    """
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    data, offsets = _collapsed_buffers(texts)
    out = pa.Array.from_buffers(pa.large_string(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pc.if_else(pc.is_null(texts), pa.scalar(None, pa.string()), out.cast(pa.string()))


def content_hashes(normalized: pa.Array) -> list[bytes]:
    """128-bit xxh3 digest per string.

    128 bits, not 64: over 10^9 documents a 64-bit hash has a ~3% chance of
    at least one false collision (birthday bound n^2/2^65); 128 bits make it
    negligible, and a collision here would silently drop a document.
    """
    digest = xxhash.xxh3_128_digest
    return [digest(s.encode("utf-8")) if s is not None else b"" for s in normalized.to_pylist()]


def exact_dedup_hashes(texts: pa.Array) -> list[bytes]:
    """``content_hashes(normalize_for_exact_dedup(texts))`` straight from the kernels'
    buffer: no Python string per document (was a ``str.lower().split()`` per text,
    a third of the exact-dedup stage)."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    data, offsets = _collapsed_buffers(texts)
    view, bounds = memoryview(data), offsets.tolist()
    digest = xxhash.xxh3_128_digest
    valid = pc.is_valid(texts).to_numpy(zero_copy_only=False) if texts.null_count else None
    return [
        digest(view[bounds[i] : bounds[i + 1]]) if valid is None or valid[i] else b"" for i in range(len(bounds) - 1)
    ]


def char_lengths(texts: pa.Array) -> pa.Array:
    """Characters (code points) per document; null counts as 0."""
    return pc.fill_null(pc.utf8_length(texts), 0)


def total_chars(texts: pa.Array) -> int:
    """Characters (code points) of all documents; null counts as 0.  Counted on
    the UTF-8 bytes when there is no null (a null slot may hold bytes): 4x
    faster than summing ``char_lengths``, and the funnel counts every stage's
    input this way."""
    if texts.null_count or not pa.types.is_string(texts.type):
        return pc.sum(char_lengths(texts)).as_py() or 0
    from curate.classifiers import normalize_kernels  # lazy, as above
    from curate.classifiers.minhash import string_buffers

    data, offsets = string_buffers(texts)
    data = data[offsets[0] : offsets[-1]]
    return len(data) - int(normalize_kernels.utf8_continuation_bytes(data))


def estimate_tokens(chars: int, tokens_per_char: float = DEFAULT_TOKENS_PER_CHAR) -> int:
    return int(round(chars * tokens_per_char))
