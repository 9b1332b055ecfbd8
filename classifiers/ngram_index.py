"""Benchmark n-gram index for decontamination.

Normalization, shared by index and documents: NFKC, lower-case, every
punctuation and symbol character deleted (not replaced by a space, so "don't",
"dont" and "DON'T" agree, and so do "3.5" and "35"), then split on whitespace.
Tokens get ``token_kernels.token_hash`` (FNV-1a 64 + fmix64); an n-gram's 64-bit hash is the polynomial of its token
hashes (the same machinery as the MinHash shingles).

Index: sorted unique uint64 n-gram hashes with, for each, the item that owns
it (compact: 12 bytes per n-gram; all of GSM8K + HumanEval + MMLU fit in a
few MB).  Excluded (and counted): n-grams that occur in more than
``max_item_frequency`` items -- templates such as "which of the following is
true" -- and n-grams present in an optional clean reference corpus.  Items
with fewer than n tokens are too short to match reliably and are counted, not
indexed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.classifiers import token_kernels
from curate.classifiers.minhash import _POLY, normalize_for_shingles, normalized_buffers, shingle_hashes

_DELETE = r"[\p{P}\p{S}]"


def tokenize(texts) -> pa.ListArray:
    """Tokens as strings (index building, cutting, tests); ``text_token_hashes`` hashes
    the same tokens straight from the bytes."""
    out = pc.replace_substring_regex(normalize_for_shingles(texts), pattern=_DELETE, replacement="")
    split = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(out))
    # Arrow splits an empty string into one empty token; a document of only
    # punctuation has no token
    flat = pc.list_flatten(split)
    keep = pc.greater(pc.utf8_length(flat), 0)
    parents = pc.list_parent_indices(split).to_numpy(zero_copy_only=False)
    counts = np.bincount(parents[keep.to_numpy(zero_copy_only=False)], minlength=len(split))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(keep))


def text_token_hashes(texts) -> tuple[np.ndarray, np.ndarray]:
    """``token_hashes(tokenize(texts))`` by one compiled pass over the normalized
    bytes (``token_kernels.deleting_token_hashes``): no regex pass, no token strings
    (14.5k -> 25.4k docs/s on the scaled real documents, mean 2.2 KB)."""
    return token_kernels.deleting_token_hashes(*normalized_buffers(texts))


def ngram_hashes(texts, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hashes, offsets per text, token count per text); texts shorter than n give no n-gram."""
    return grams_from_token_hashes(*text_token_hashes(texts), n)


def grams_from_token_hashes(hashes: np.ndarray, offsets: np.ndarray, n: int):
    lengths = np.diff(offsets)
    values, out_offsets = shingle_hashes(hashes, offsets, n, bits=64)
    # shingle_hashes makes one shingle of a short text; drop those here
    short = (lengths < n) & (lengths > 0)
    if short.any():
        keep = np.ones(len(values), dtype=bool)
        keep[out_offsets[:-1][short]] = False
        counts = np.diff(out_offsets) - short.astype(np.int64)
        values = values[keep]
        out_offsets = np.concatenate([[0], np.cumsum(counts)])
    return values, out_offsets, lengths


_POLY_INV = np.uint64(pow(int(_POLY), -1, 1 << 64))

# Items shorter than n tokens but at least this long are indexed whole, as one
# gram of their own length; shorter ones are too generic to match and are counted.
MIN_SHORT_ITEM_TOKENS = 6


@dataclasses.dataclass
class IndexStats:
    items: int = 0
    items_too_short: int = 0
    items_indexed_whole: int = 0
    ngrams: int = 0
    excluded_common_across_items: int = 0
    excluded_mostly_numbers: int = 0
    excluded_in_reference_text: int = 0


def _numeric_share(is_numeric: np.ndarray, offsets: np.ndarray, n: int) -> np.ndarray:
    """Per n-gram (in ngram_hashes order): share of its tokens that are numbers."""
    is_num = is_numeric.astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(is_num)])
    shares = []
    for d in range(len(offsets) - 1):
        lo, hi = offsets[d], offsets[d + 1]
        if hi - lo >= n:
            starts = np.arange(lo, hi - n + 1)
            shares.append((csum[starts + n] - csum[starts]) / n)
    return np.concatenate(shares) if shares else np.zeros(0)


@dataclasses.dataclass
class NgramIndex:
    n: int
    hashes: np.ndarray  # sorted unique uint64
    owners: np.ndarray  # int32 item index per hash
    item_ids: list[str]
    item_benchmarks: list[str]
    item_ngrams: np.ndarray  # int32 indexed n-grams per item
    stats: dict
    # items shorter than n: length -> (sorted hashes of whole items, owners)
    short: dict = dataclasses.field(default_factory=dict)
    # lookup bitmaps, built on first use in each process (id(keys) -> (bits, shift))
    _bitmaps: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self):  # a side input ships without them
        state = dict(self.__dict__)
        state["_bitmaps"] = {}
        return state

    @classmethod
    def build(
        cls,
        items: list[tuple[str, str, str]],
        n: int = 13,
        max_item_frequency: int = 2,
        reference_texts: list[str] | None = None,
    ) -> "NgramIndex":
        """``items``: (benchmark, item_id, text)."""
        stats = IndexStats(items=len(items))
        token_h, token_off, is_numeric = token_kernels.deleting_token_hashes(
            *normalized_buffers([t for _, _, t in items]), numeric=True
        )
        values, offsets, lengths = grams_from_token_hashes(token_h, token_off, n)
        owner = np.repeat(np.arange(len(items), dtype=np.int32), np.diff(offsets))
        # n-grams that are mostly numbers ("3 4 5 6 7 8 9 10") match tables, not items
        numeric = _numeric_share(is_numeric, token_off, n) >= 0.5
        stats.excluded_mostly_numbers = int(len(np.unique(values[numeric])))
        values, owner = values[~numeric], owner[~numeric]
        # whole short items, one gram of their own length
        short = {}
        short_items = np.flatnonzero((lengths < n) & (lengths >= MIN_SHORT_ITEM_TOKENS))
        stats.items_too_short = int((lengths < MIN_SHORT_ITEM_TOKENS).sum())
        stats.items_indexed_whole = int(len(short_items))
        for length in sorted(set(lengths[short_items].tolist())):
            members = short_items[lengths[short_items] == length]
            hashes_l = np.array(
                [
                    grams_from_token_hashes(token_h[token_off[i] : token_off[i + 1]], np.array([0, length]), length)[0][
                        0
                    ]
                    for i in members
                ],
                dtype=np.uint64,
            )
            order = np.argsort(hashes_l, kind="stable")
            short[int(length)] = (hashes_l[order], members[order].astype(np.int32))
        # unique (hash, item) pairs sorted by hash then item (a lexsort: np.unique(axis=0)
        # took 1 s of the 2 s build), then how many items share each hash
        order = np.lexsort((owner, values))
        values, owner = values[order], owner[order]
        distinct = np.ones(len(values), dtype=bool)
        distinct[1:] = (values[1:] != values[:-1]) | (owner[1:] != owner[:-1])
        values, owner = values[distinct], owner[distinct]
        starts = (
            np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
            if len(values)
            else np.zeros(0, dtype=np.int64)
        )
        uniq, counts = values[starts], np.diff(np.append(starts, len(values)))
        common = counts > max_item_frequency
        stats.excluded_common_across_items = int(common.sum())
        keep = ~common
        if reference_texts:
            ref, _, _ = ngram_hashes(reference_texts, n)
            in_ref = np.isin(uniq, ref) & keep
            stats.excluded_in_reference_text = int(in_ref.sum())
            keep &= ~in_ref
        hashes = uniq[keep]
        owners = owner[starts[keep]].astype(np.int32)  # the smallest item owning the hash
        stats.ngrams = int(len(hashes))
        item_ngrams = np.bincount(owners, minlength=len(items)).astype(np.int32)
        for _, members in short.values():
            item_ngrams[members] = 1
        return cls(
            n,
            hashes,
            owners,
            [i for _, i, _ in items],
            [b for b, _, _ in items],
            item_ngrams,
            dataclasses.asdict(stats),
            short,
        )

    def nbytes(self) -> int:
        return int(
            self.hashes.nbytes
            + self.owners.nbytes
            + self.item_ngrams.nbytes
            + sum(h.nbytes + o.nbytes for h, o in self.short.values())
        )

    def _lookup(self, keys: np.ndarray, owners: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Owner per value or -1.  A bitmap of the keys' top bits answers most misses
        with one probe into a few MB (a document's n-grams are nearly all misses);
        only the ~6% that pass it are binary-searched (measured 2x faster overall)."""
        out = np.full(len(values), -1, dtype=np.int64)
        if len(keys) == 0 or len(values) == 0:
            return out
        bits, shift = self._bitmap(keys)
        top = values >> shift
        candidates = np.flatnonzero((bits[top >> np.uint64(3)] >> (top & np.uint64(7)).astype(np.uint8)) & 1)
        if len(candidates):
            wanted = values[candidates]
            pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
            out[candidates] = np.where(keys[pos] == wanted, owners[pos], -1)
        return out

    def lookup(self, values: np.ndarray) -> np.ndarray:
        """Item index per value, -1 when the n-gram is not in the index."""
        return self._lookup(self.hashes, self.owners, values)

    def _bitmap(self, keys: np.ndarray):
        if id(keys) not in self._bitmaps:
            self._bitmaps[id(keys)] = _top_bits_bitmap(keys)
        return self._bitmaps[id(keys)]

    def _gram_owners(self, token_h, token_off, k: int, keys: np.ndarray, owners: np.ndarray):
        """(owner per k-gram or -1, per-document gram offsets): ``token_kernels.gram_owners``."""
        bits, shift = self._bitmap(keys)
        return token_kernels.gram_owners(token_h, token_off, k, _POLY, _POLY_INV, bits, shift, keys, owners)

    def match_batch(self, texts) -> list[dict]:
        """Per text: {item index: matched n-gram count} (empty dict when clean),
        plus the positions (n-gram start token) of the n-gram matches under key -1.

        One compiled pass per gram length rolls the n-gram hashes and probes the
        index; Python objects are made only for the documents that match."""
        token_h, token_off = text_token_hashes(texts)
        out: list[dict] = [{} for _ in range(len(token_off) - 1)]
        if len(self.hashes):
            found, gram_off = self._gram_owners(token_h, token_off, self.n, self.hashes, self.owners)
            hits = np.flatnonzero(found >= 0)
            docs = np.searchsorted(gram_off, hits, side="right") - 1
            for d in np.unique(docs).tolist():
                positions = hits[docs == d]
                items, counts = np.unique(found[positions], return_counts=True)
                out[d] = {int(i): int(c) for i, c in zip(items, counts)}
                out[d][-1] = (positions - gram_off[d]).tolist()
        for length, (keys, owners_l) in self.short.items():
            found, gram_off = self._gram_owners(token_h, token_off, length, keys, owners_l)
            hits = np.flatnonzero(found >= 0)
            docs = np.searchsorted(gram_off, hits, side="right") - 1
            for d, item in sorted(set(zip(docs.tolist(), found[hits].tolist()))):  # once per document
                out[d][item] = out[d].get(item, 0) + 1
        return out


def _top_bits_bitmap(keys: np.ndarray) -> tuple[np.ndarray, np.uint64]:
    """A bit per value of the keys' top ``b`` bits, 2^b >= 16 x keys (at most 2^30
    bits = 128 MB): a random 64-bit value that is not a key passes with p <= 1/16."""
    b = int(min(30, max(10, np.ceil(np.log2(len(keys) * 16)))))
    shift = np.uint64(64 - b)
    top = keys >> shift
    bits = np.zeros(1 << (b - 3), dtype=np.uint8)
    np.bitwise_or.at(bits, top >> np.uint64(3), (np.uint8(1) << (top & np.uint64(7)).astype(np.uint8)))
    return bits, shift


def _normalize_token(raw: str) -> list[str]:
    import unicodedata

    text = unicodedata.normalize("NFKC", raw).lower()
    text = "".join(c for c in text if unicodedata.category(c)[0] not in "PS")
    return text.split()


def token_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Tokens as ``tokenize`` makes them, with the character span each came from."""
    import re

    tokens, spans = [], []
    for m in re.finditer(r"\S+", text):
        for tok in _normalize_token(m.group()):
            tokens.append(tok)
            spans.append(m.span())
    return tokens, spans


def cut_matches(text: str, starts: list[int], n: int, window: int = 200, min_piece: int = 200, max_cuts: int = 10):
    """Remove ``window`` characters around each matched n-gram (NeMo Curator's rule).

    Returns (kept text or None when the document should be dropped, removed text,
    number of cuts).  The kept text is the pieces between the cuts of at least
    ``min_piece`` characters (whitespace stripped), joined by blank lines; the removed
    text is everything else that is not whitespace, as the contiguous segments of the
    document outside the kept pieces: the cut windows and the pieces too short to keep,
    so the two together hold every word of the document.  None when the cuts exceed
    ``max_cuts``, when no piece of at least ``min_piece`` characters remains, or when the
    span tokenizer disagrees with the batch tokenizer (then cutting would be a guess).
    """
    tokens, spans = token_spans(text)
    arrow_tokens = tokenize([text]).to_pylist()[0]
    if tokens != arrow_tokens:
        return None, [], 0
    ranges = sorted((max(0, spans[p][0] - window), min(len(text), spans[p + n - 1][1] + window)) for p in starts)
    merged: list[list[int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if len(merged) > max_cuts:
        return None, [text[lo:hi] for lo, hi in merged], len(merged)
    bounds = [0, *(b for lo_hi in merged for b in lo_hi), len(text)]
    kept_spans = []  # (start, end) of each piece long enough to keep, whitespace stripped
    for lo, hi in zip(bounds[::2], bounds[1::2]):
        piece = text[lo:hi]
        start = lo + len(piece) - len(piece.lstrip())
        end = hi - (len(piece) - len(piece.rstrip()))
        if end - start >= min_piece:
            kept_spans.append((start, end))
    gaps = zip([0, *(e for _, e in kept_spans)], [*(s for s, _ in kept_spans), len(text)])
    removed = [text[lo:hi] for lo, hi in gaps if text[lo:hi].strip()]
    kept = [text[lo:hi] for lo, hi in kept_spans]
    return ("\n\n".join(kept) if kept else None), removed, len(merged)
