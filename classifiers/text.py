"""Text normalization, hashing and size estimates shared by all stages.

Everything works on a whole batch (a ``pyarrow`` string array) at once, so a
document is normalized once per purpose with vectorized Arrow kernels and the
Python loop is left only for hashing.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

# RE2 (Arrow's regex engine) treats \s as ASCII only; \p{Z} adds the Unicode
# separators (NBSP, em space, ideographic space, ...) that NFKC does not fold.
_WHITESPACE_RUN = r"[\s\p{Z}]+"

# English averages ~3.8 characters per BPE token (GPT-2/Llama tokenizers on web
# text), i.e. ~0.26 tokens per character; other scripts differ, which is why it
# is a configurable ratio and the funnel labels the figure an estimate.
DEFAULT_TOKENS_PER_CHAR = 0.26


def normalize_for_exact_dedup(texts: pa.Array) -> pa.Array:
    """NFKC, lower-case, whitespace runs collapsed to one space, trimmed.

    Two documents that differ only in case, Unicode compatibility forms or
    spacing normalize to the same string and so are exact duplicates.
    """
    out = pc.utf8_normalize(texts, form="NFKC")
    out = pc.utf8_lower(out)
    out = pc.replace_substring_regex(out, pattern=_WHITESPACE_RUN, replacement=" ")
    return pc.utf8_trim_whitespace(out)


def content_hashes(normalized: pa.Array) -> list[bytes]:
    """128-bit xxh3 digest per string.

    128 bits, not 64: over 10^9 documents a 64-bit hash has a ~3% chance of
    at least one false collision (birthday bound n^2/2^65); 128 bits make it
    negligible, and a collision here would silently drop a document.
    """
    digest = xxhash.xxh3_128_digest
    return [digest(s.encode("utf-8")) if s is not None else b"" for s in normalized.to_pylist()]


def char_lengths(texts: pa.Array) -> pa.Array:
    """Characters (code points) per document; null counts as 0."""
    return pc.fill_null(pc.utf8_length(texts), 0)


def estimate_tokens(chars: int, tokens_per_char: float = DEFAULT_TOKENS_PER_CHAR) -> int:
    return int(round(chars * tokens_per_char))
