"""Text normalization, hashing and size estimates shared by all stages.

Everything works on a whole batch (a ``pyarrow`` string array) at once.
Exact-dedup normalization is one Python pass over ``str`` methods (faster here
than Arrow's normalize + regex kernels), with NFKC only for the documents a
compiled scan finds it could change.
"""
from __future__ import annotations

import unicodedata

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

# English averages ~3.8 characters per BPE token (GPT-2/Llama tokenizers on web
# text), i.e. ~0.26 tokens per character; other scripts differ, which is why it
# is a configurable ratio and the funnel labels the figure an estimate.
DEFAULT_TOKENS_PER_CHAR = 0.26


def normalize_one_for_exact_dedup(text: str, nfkc: bool = True) -> str:
    """NFKC (``nfkc=False``: the caller knows it is a no-op), lower-case,
    whitespace runs collapsed to one space, trimmed.  ``str.split()`` splits on
    every Unicode whitespace character (NBSP, ideographic space, ...)."""
    if nfkc and not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.lower().split())


def _needs_nfkc(texts: pa.Array) -> list[bool]:
    from curate.classifiers.minhash import nfkc_needed  # lazy: numba kernels load only when normalizing

    return nfkc_needed(texts).tolist()


def normalize_for_exact_dedup(texts: pa.Array) -> pa.Array:
    """``normalize_one_for_exact_dedup`` over a string array (nulls stay null).

    Two documents that differ only in case, Unicode compatibility forms or
    spacing normalize to the same string and so are exact duplicates.  A Python
    loop, with NFKC only where a character could change, measured 2x faster
    than Arrow's utf8_normalize + regex replace.
    """
    return pa.array([None if t is None else normalize_one_for_exact_dedup(t, n)
                     for t, n in zip(texts.to_pylist(), _needs_nfkc(texts))], pa.string())


def content_hashes(normalized: pa.Array) -> list[bytes]:
    """128-bit xxh3 digest per string.

    128 bits, not 64: over 10^9 documents a 64-bit hash has a ~3% chance of
    at least one false collision (birthday bound n^2/2^65); 128 bits make it
    negligible, and a collision here would silently drop a document.
    """
    digest = xxhash.xxh3_128_digest
    return [digest(s.encode("utf-8")) if s is not None else b"" for s in normalized.to_pylist()]


def exact_dedup_hashes(texts: pa.Array) -> list[bytes]:
    """``content_hashes(normalize_for_exact_dedup(texts))`` in one pass, no Arrow round trip."""
    digest, norm = xxhash.xxh3_128_digest, normalize_one_for_exact_dedup
    return [digest(norm(t, n).encode("utf-8")) if t is not None else b""
            for t, n in zip(texts.to_pylist(), _needs_nfkc(texts))]


def char_lengths(texts: pa.Array) -> pa.Array:
    """Characters (code points) per document; null counts as 0."""
    return pc.fill_null(pc.utf8_length(texts), 0)


def estimate_tokens(chars: int, tokens_per_char: float = DEFAULT_TOKENS_PER_CHAR) -> int:
    return int(round(chars * tokens_per_char))
