"""Compiled (numba) normalization over Arrow string buffers: NFKC, lower-casing, whitespace.

What it holds: the per-code-point tables (``nfkc_stable_table``,
``nfkc_map_table``, ``lower_table``, ``nfkc_lower_table``,
``whitespace_table``), the byte rewrite that applies them
(``rewritten_sizes``, ``rewrite_texts``), the whitespace collapse of exact
dedup (``collapse_whitespace``), UTF-8 code-point counts
(``utf8_continuation_bytes``), and the UTF-8 decoder every other kernel
module inlines (``decode_utf8``).  ``classifiers.minhash`` (``nfkc``,
``normalized_buffers``) and ``classifiers.text`` drive them; every stage that
tokenizes (exact and near dedup, decontamination, quality) reads their output.

Why not Arrow's NFKC: pyarrow's ``utf8_normalize`` with ``form="NFKC"`` (or
"NFC") returns *decomposed* text: "é" comes back as "e" + U+0301, a Hangul
syllable as its jamo.  It decomposes and never recomposes, an upstream bug
(apache/arrow#51225, seen here on pyarrow 25.0.1; fixed by apache/arrow#51237,
which composes after decomposing).  Its output would differ from
``unicodedata.normalize("NFKC", t)`` on accented and Korean text, so
duplicates would hash apart.  NFKC is therefore defined by Python's
``unicodedata``, and this module is the workaround that makes it affordable:
a document whose characters are all stable or have a context-free NFKC form
(``nfkc_map_table``: fullwidth forms, ligatures, "…", "µ", superscripts) is
rewritten by one compiled pass; only documents holding a character whose NFKC
depends on its neighbours (combining marks, jamo) go through ``unicodedata``.
Arrow's ``utf8_lower`` is correct and stays the definition of lower-casing: its
mapping is read off Arrow itself into the same tables, so NFKC and
lower-casing are one pass.

Why compiled: every document of four stages is normalized, and a table
lookup per code point over the raw UTF-8 bytes avoids a Python string per
document and Arrow's several copies of the text.  Everything is integer
arithmetic and table lookups, so results are identical on every machine and
runner.  The tables follow the Unicode version of the worker's Python and
Arrow's utf8proc (pin both across runners, as any other dependency).

Inputs are the raw buffers of an Arrow ``string`` array: ``data`` (uint8, the
concatenated UTF-8 bytes) and ``offsets`` (int64, ``n + 1`` byte offsets).

numba's on-disk cache does not notice a change in another file
(numba/numba#1833): after editing ``decode_utf8``, delete the cached
``*.nbi``/``*.nbc`` files of ``token_kernels`` and ``feature_kernels`` under
``classifiers/__pycache__``, which inline it.
"""

from __future__ import annotations

import functools
import unicodedata

import numba
import numpy as np

# Above this, no code point is assigned a P/S category or a space-less script
# (plane 14 holds tags and variation selectors: word characters, as before).
TABLE_SIZE = 0x40000


@functools.lru_cache(maxsize=1)
def _canonical_seconds() -> frozenset:
    """Code points that can compose with a preceding character: the second
    characters of the canonical pairs, and the Hangul medial/final jamo."""
    second = {0x1161 + i for i in range(21)} | {0x11A8 + i for i in range(27)}
    for cp in range(TABLE_SIZE):  # no canonical pair composes to a code point above
        dec = unicodedata.decomposition(chr(cp))
        if dec and not dec.startswith("<"):
            parts = dec.split()
            if len(parts) == 2:
                second.add(int(parts[1], 16))
    return frozenset(second)


@functools.lru_cache(maxsize=1)
def nfkc_stable_table() -> np.ndarray:
    """bool per code point below ``TABLE_SIZE``: a string made only of these is
    already NFKC, whatever their order (code points above count as unstable).

    A character is stable when NFKC leaves it alone, its combining class is 0
    (nothing to reorder), and neither it nor the first character of its
    canonical decomposition can compose with a preceding character (the second
    characters of the canonical pairs, and the Hangul medial/final jamo).  So
    most accented Latin, Cyrillic, Greek, CJK and typographic punctuation skip
    ``unicodedata.normalize`` and its per-character quick check.
    """
    second = _canonical_seconds()
    table = np.zeros(TABLE_SIZE, dtype=np.bool_)
    for cp in range(TABLE_SIZE):
        if 0xD800 <= cp <= 0xDFFF or cp in second:
            continue
        ch = chr(cp)
        first = unicodedata.normalize("NFD", ch)[0]
        table[cp] = (
            unicodedata.is_normalized("NFKC", ch)
            and unicodedata.combining(ch) == 0
            and unicodedata.combining(first) == 0
            and ord(first) not in second
        )
    return table


@functools.lru_cache(maxsize=1)
def nfkc_map_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(action per code point below ``TABLE_SIZE``, replacement UTF-8 bytes, their offsets).

    action -1: stable (``nfkc_stable_table``), copied as is; k >= 0: replaced by
    replacement k, ``NFKC(c)``; -2: only ``unicodedata`` can normalize it.

    A character gets a replacement when its compatibility decomposition starts
    with a starter (combining class 0) that is not the second character of any
    canonical pair: then nothing before it can reorder past or compose with it,
    and since every replaced or stable character starts that way, nothing after
    it reaches into it either, so NFKC of a text made only of stable and
    replaced characters is the concatenation of their NFKC forms (fullwidth
    forms, ligatures, superscripts, "…", "µ", "¯", ...: most of what real text
    needs).  Combining marks, Hangul jamo and the like stay with ``unicodedata``.
    """
    stable, second = nfkc_stable_table(), _canonical_seconds()
    action = np.where(stable, -1, -2).astype(np.int32)
    pieces = []
    for cp in np.flatnonzero(~stable).tolist():
        if 0xD800 <= cp <= 0xDFFF or cp in second:
            continue
        decomposed = unicodedata.normalize("NFKD", chr(cp))
        if decomposed and unicodedata.combining(decomposed[0]) == 0 and ord(decomposed[0]) not in second:
            action[cp] = len(pieces)
            pieces.append(unicodedata.normalize("NFKC", chr(cp)).encode("utf-8"))
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in pieces])
    return action, np.frombuffer(b"".join(pieces), dtype=np.uint8).copy(), offsets


def _replacement_table(pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code per code point: -1 unchanged or k, replacement k's UTF-8 bytes, their offsets)."""
    code = np.full(TABLE_SIZE, -1, dtype=np.int32)
    pieces = []
    for cp, text in pairs:
        code[cp] = len(pieces)
        pieces.append(text.encode("utf-8"))
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in pieces])
    return code, np.frombuffer(b"".join(pieces), dtype=np.uint8).copy(), offsets


def _arrow_lower(texts: list[str]) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.utf8_lower(pa.array(texts, pa.string())).to_pylist()


@functools.lru_cache(maxsize=1)
def lower_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrow's ``utf8_lower`` (one code point at a time, utf8proc's mapping) as a
    ``_replacement_table`` read off Arrow itself, for non-ASCII code points."""
    cps = [cp for cp in range(0x80, TABLE_SIZE) if not 0xD800 <= cp <= 0xDFFF]
    lowered = _arrow_lower([chr(cp) for cp in cps])
    return _replacement_table((cp, low) for cp, low in zip(cps, lowered) if low != chr(cp))


@functools.lru_cache(maxsize=1)
def nfkc_lower_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_replacement_table`` of Arrow-lower(NFKC(c)) for the code points whose NFKC
    is context-free (``nfkc_map_table``) or that only lower-casing changes; code -2
    for those only ``unicodedata`` can normalize (a document holding one takes that path)."""
    action, repl, repl_offsets = nfkc_map_table()
    lower_code = lower_table()[0]
    mapped = np.flatnonzero(action >= 0).tolist()
    forms = [repl[repl_offsets[k] : repl_offsets[k + 1]].tobytes().decode("utf-8") for k in action[mapped].tolist()]
    pairs = dict(zip(mapped, _arrow_lower(forms)))
    lowered_stable = np.flatnonzero((action == -1) & (lower_code >= 0)).tolist()
    for cp, low in zip(lowered_stable, _arrow_lower([chr(cp) for cp in lowered_stable])):
        pairs[cp] = low
    code, out_repl, out_offsets = _replacement_table(sorted(pairs.items()))
    code[action == -2] = -2
    return code, out_repl, out_offsets


ASCII_SAME = np.arange(256, dtype=np.uint8)
ASCII_LOWER = ASCII_SAME.copy()
ASCII_LOWER[65:91] += 32
NO_REPLACEMENTS = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.int64))


@numba.njit(cache=True, inline="always")
def decode_utf8(data, i):
    """(code point, byte length) of the UTF-8 sequence at ``data[i]``."""
    b0 = np.int64(data[i])
    if b0 < 0x80:
        return b0, 1
    if b0 < 0xE0:
        return ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b0 < 0xF0:
        return ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    return (
        ((b0 & 0x07) << 18)
        | ((np.int64(data[i + 1]) & 0x3F) << 12)
        | ((np.int64(data[i + 2]) & 0x3F) << 6)
        | (np.int64(data[i + 3]) & 0x3F)
    ), 4


@numba.njit(cache=True, inline="always")
def _copy_bytes(src, start, count, out, o):
    """``out[o:o + count] = src[start:start + count]``; returns ``o + count``."""
    for r in range(count):
        out[o + r] = src[start + r]
    return o + count


@numba.njit(cache=True, inline="always")
def _mapped_size(src, i, end, code, repl_offsets, beyond):
    """Bytes of ``src[i:end]`` once rewritten by a ``_replacement_table``, or -1 when
    it holds a code point coded -2 (only ``unicodedata`` can normalize it); code
    points past the table are coded ``beyond``."""
    size = end - i
    while i < end:
        if src[i] < 0x80:
            i += 1
            continue
        cp, width = decode_utf8(src, i)
        k = code[cp] if cp < code.shape[0] else beyond
        if k >= 0:
            size += repl_offsets[k + 1] - repl_offsets[k] - width
        elif k == -2:
            return -1
        i += width
    return size


@numba.njit(cache=True, nogil=True)
def rewritten_sizes(data, offsets, code, repl_offsets):
    """Per text: its bytes after ``rewrite_texts``'s table rewrite, -1 for ``unicodedata``'s texts."""
    n = offsets.shape[0] - 1
    sizes = np.empty(n, dtype=np.int64)
    for d in range(n):
        sizes[d] = _mapped_size(data, offsets[d], offsets[d + 1], code, repl_offsets, -2)
    return sizes


@numba.njit(cache=True, inline="always")
def _map_text(src, i, end, code, repl, repl_offsets, ascii_map, out, o):
    """Write ``src[i:end]`` rewritten by a ``_replacement_table`` (ASCII bytes by ``ascii_map``) to ``out[o:]``."""
    while i < end:
        b = src[i]
        if b < 0x80:
            out[o] = ascii_map[b]
            o += 1
            i += 1
            continue
        cp, width = decode_utf8(src, i)
        k = code[cp] if cp < code.shape[0] else -1
        if k >= 0:
            o = _copy_bytes(repl, repl_offsets[k], repl_offsets[k + 1] - repl_offsets[k], out, o)
        else:
            o = _copy_bytes(src, i, width, out, o)
        i += width


@numba.njit(cache=True, nogil=True)
def rewrite_texts(
    data,
    offsets,
    code,
    repl,
    repl_offsets,
    sizes,
    slow_of,
    slow_data,
    slow_offsets,
    after_code,
    after_repl,
    after_offsets,
    ascii_map,
):
    """(data, offsets) of every text rewritten by a ``_replacement_table`` (``code``:
    ``nfkc_lower_table`` or ``nfkc_map_table``) and ``ascii_map``.

    Text d becomes ``sizes[d]`` bytes (``rewritten_sizes``) unless
    ``slow_of[d] >= 0``: then its ``unicodedata`` NFKC,
    ``slow_data[slow_offsets[j]:slow_offsets[j + 1]]`` with ``j = slow_of[d]``,
    is rewritten by the ``after_*`` table (``lower_table``, or an empty one)."""
    n = offsets.shape[0] - 1
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    for d in range(n):
        j = slow_of[d]
        if j >= 0:
            size = _mapped_size(slow_data, slow_offsets[j], slow_offsets[j + 1], after_code, after_offsets, -1)
        else:
            size = sizes[d]
        out_offsets[d + 1] = out_offsets[d] + size
    out = np.empty(out_offsets[n], dtype=np.uint8)
    for d in range(n):
        j = slow_of[d]
        if j >= 0:
            _map_text(
                slow_data,
                slow_offsets[j],
                slow_offsets[j + 1],
                after_code,
                after_repl,
                after_offsets,
                ascii_map,
                out,
                out_offsets[d],
            )
        else:
            _map_text(data, offsets[d], offsets[d + 1], code, repl, repl_offsets, ascii_map, out, out_offsets[d])
    return out, out_offsets


@functools.lru_cache(maxsize=1)
def whitespace_table() -> np.ndarray:
    """bool per code point up to U+3000: Python's ``str.isspace`` (what ``str.split()`` splits on)."""
    return np.array([chr(cp).isspace() for cp in range(0x3001)], dtype=np.bool_)


@numba.njit(cache=True, nogil=True)
def collapse_whitespace(data, offsets, spaces):
    """Per document: whitespace runs (``spaces``: Python's ``str.isspace``) to one
    space, trimmed, and final sigma folded to sigma (U+03C2 -> U+03C3, so a
    word's case forms agree after Arrow's context-free lower-casing).
    Returns the new (data, offsets); the output is never longer than the input."""
    n_docs = offsets.shape[0] - 1
    out = np.empty(offsets[n_docs] - offsets[0], dtype=np.uint8)
    out_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    o = 0
    for d in range(n_docs):
        i, end = offsets[d], offsets[d + 1]
        doc_start = o
        pending = False
        while i < end:
            cp, size = decode_utf8(data, i)
            if cp < spaces.shape[0] and spaces[cp]:
                pending = o > doc_start
            else:
                if pending:
                    out[o] = 32
                    o += 1
                    pending = False
                if cp == 0x3C2:
                    out[o] = 0xCF
                    out[o + 1] = 0x83
                    o += 2
                else:
                    o = _copy_bytes(data, i, size, out, o)
            i += size
        out_offsets[d + 1] = o
    return out[:o], out_offsets


@numba.njit(cache=True, nogil=True)
def utf8_continuation_bytes(data):
    """How many bytes of UTF-8 ``data`` continue a character (``10xxxxxx``): the
    bytes minus these are its code points."""
    count = 0
    for byte in data:
        count += (byte & 0xC0) == 0x80
    return count
