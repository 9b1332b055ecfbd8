"""fastText supervised-model inference (lid.176) as a numba kernel over a batch.

Why: fastText's C++ ``predict`` builds a ``std::string`` per character n-gram
and costs about 0.33 us per input character here (a 2 KB document: ~700 us),
so language ID was the slowest stage.  The arithmetic itself is small (dim 16,
a 175-node hierarchical-softmax tree).  This module reads the model file
(format version 12: ``.bin`` or quantized ``.ftz``) into arrays and runs the
same steps in one compiled loop per batch, hashing n-grams incrementally:

1. tokens: bytes split on `` \\n\\r\\t\\v\\f\\0``, then the end-of-sentence
   token ``</s>`` (what ``predict`` sees for one line);
2. each token: FNV-1a 32 over its bytes as *signed* chars (fastText's hash);
   an in-vocabulary word adds its row and its n-gram rows, an unknown word
   the rows of the n-grams of ``<token>`` (n in [minn, maxn] code points,
   ``hash % bucket``, through the prune index of quantized models); tokens
   that look like labels (``__label__``) add nothing;
3. hidden = mean of those rows (float32 sums in fastText's order; quantized
   rows are decoded once at load as ``norm * centroid``, the product fastText
   forms per addition);
4. the best label: fastText's depth-first search of the Huffman tree built
   from the label counts, score = sum of ``log(p + 1e-5)`` along the path,
   probability = ``exp(score)``.

``tests/test_fasttext_lid.py`` checks labels and probabilities against the
fasttext C++ ``predict`` on every shared real document and on edge cases.
Only supervised models with hierarchical softmax, ``wordNgrams`` 1 and a
dense output matrix are accepted (lid.176 is all three); anything else is
refused at load with the reason.
"""

from __future__ import annotations

import struct

import numba
import numpy as np

_FNV32_OFFSET, _FNV32_PRIME = 2166136261, 16777619
_LOSS_HS, _MODEL_SUP = 1, 3
EOS = b"</s>"
LABEL_PREFIX = b"__label__"


class UnsupportedModel(Exception):
    pass


def fasttext_hash(token: bytes) -> int:
    """fastText's ``Dictionary::hash``: FNV-1a 32 over bytes read as int8."""
    h = _FNV32_OFFSET
    for byte in token:
        h = ((h ^ ((byte - 256 if byte > 127 else byte) & 0xFFFFFFFF)) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.off = data, 0

    def read(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.off)
        self.off += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.off)
        self.off += out.nbytes
        return out

    def cstring(self) -> bytes:
        end = self.data.index(b"\0", self.off)
        word, self.off = self.data[self.off : end], end + 1
        return word


def _product_quantizer(r: _Reader):
    dim, nsubq, dsub, lastdsub = r.read("iiii")
    return dict(dim=dim, nsubq=nsubq, dsub=dsub, lastdsub=lastdsub, centroids=r.array("<f4", dim * 256))


def _centroid(pq: dict, m: int, code: np.ndarray) -> np.ndarray:
    """``ProductQuantizer::get_centroids(m, code)`` for a vector of codes: (rows, d)."""
    ksub, dsub = 256, pq["dsub"]
    if m == pq["nsubq"] - 1:
        d = pq["lastdsub"]
        start = m * ksub * dsub + code.astype(np.int64) * d
    else:
        d = dsub
        start = (m * ksub + code.astype(np.int64)) * dsub
    return pq["centroids"][start[:, None] + np.arange(d)[None, :]], d


def _matrix(r: _Reader, quantized: bool) -> np.ndarray:
    """Dense float32 rows; a quantized row is decoded as fastText adds it: ``float32(norm * c)``."""
    if not quantized:
        m, n = r.read("qq")
        return r.array("<f4", m * n).reshape(m, n)
    (qnorm,) = r.read("?")
    m, n = r.read("qq")
    (codesize,) = r.read("i")
    codes = r.array(np.uint8, codesize)
    pq = _product_quantizer(r)
    norms = np.ones(m, dtype=np.float32)
    if qnorm:
        norm_codes = r.array(np.uint8, m)
        npq = _product_quantizer(r)
        norms = _centroid(npq, 0, norm_codes)[0][:, 0].astype(np.float32)
    codes = codes.reshape(m, pq["nsubq"])
    dense = np.zeros((m, n), dtype=np.float32)
    for sub in range(pq["nsubq"]):
        values, d = _centroid(pq, sub, codes[:, sub])
        dense[:, sub * pq["dsub"] : sub * pq["dsub"] + d] = norms[:, None] * values
    return dense


def _subword_rows(word: bytes, minn: int, maxn: int, bucket: int, nwords: int, prune: np.ndarray | None) -> list[int]:
    """``Dictionary::computeSubwords`` of ``word`` (already wrapped in ``<`` ``>``)."""
    rows = []
    size = len(word)
    for i in range(size):
        if word[i] & 0xC0 == 0x80:
            continue
        j, n = i, 1
        while j < size and n <= maxn:
            j += 1
            while j < size and word[j] & 0xC0 == 0x80:
                j += 1
            if n >= minn and not (n == 1 and (i == 0 or j == size)):
                h = fasttext_hash(word[i:j]) % bucket
                if prune is None:
                    rows.append(nwords + h)
                elif prune[h] >= 0:
                    rows.append(nwords + int(prune[h]))
            n += 1
    return rows


def model_labels(path: str) -> list[str]:
    """The labels of a fastText model (``__label__`` stripped), reading only its header and
    dictionary: cheap enough for a driver-side check of a config's language codes."""
    with open(path, "rb") as handle:
        r = _Reader(handle.read())
    _magic, version = r.read("ii")
    if version != 12:
        raise UnsupportedModel(f"{path}: fastText format version {version} (expected 12)")
    r.read("12id")
    size, nwords, _nlabels = r.read("iii")
    r.read("qq")
    words = []
    for _ in range(size):
        words.append(r.cstring())
        r.read("qb")
    return [
        w[len(LABEL_PREFIX) :].decode("utf-8", "replace")
        if w.startswith(LABEL_PREFIX)
        else w.decode("utf-8", "replace")
        for w in words[nwords:]
    ]


class FastTextModel:
    """A supervised fastText model as arrays, for ``predict_top1``."""

    def __init__(self, path: str):
        with open(path, "rb") as handle:
            r = _Reader(handle.read())
        magic, version = r.read("ii")
        if version != 12:
            raise UnsupportedModel(f"{path}: fastText format version {version} (expected 12)")
        (self.dim, _ws, _epoch, _min_count, _neg, word_ngrams, loss, model, bucket, minn, maxn, _lr_update, _t) = (
            r.read("12id")
        )
        if model != _MODEL_SUP or loss != _LOSS_HS or word_ngrams != 1:
            raise UnsupportedModel(
                f"{path}: only supervised models with hierarchical softmax and wordNgrams 1 "
                f"(model {model}, loss {loss}, wordNgrams {word_ngrams})"
            )
        size, nwords, nlabels = r.read("iii")
        _ntokens, prune_size = r.read("qq")
        words, counts = [], []
        for _ in range(size):
            words.append(r.cstring())
            count, _type = r.read("qb")
            counts.append(count)
        prune = None
        if prune_size > 0:
            pairs = r.array("<i4", 2 * prune_size).reshape(-1, 2)
            prune = np.full(bucket, -1, dtype=np.int32)
            prune[pairs[:, 0]] = pairs[:, 1]
        elif prune_size == 0:
            raise UnsupportedModel(f"{path}: a pruned model without n-gram buckets")
        (quant_input,) = r.read("?")
        self.input = _matrix(r, quant_input)
        (quant_output,) = r.read("?")
        if quant_output:  # fastText's quantized dot product sums in another order: not reproduced
            raise UnsupportedModel(f"{path}: quantized output matrix (-qout) is not supported")
        self.output = _matrix(r, False)
        self.labels = [
            w[len(LABEL_PREFIX) :].decode("utf-8", "replace")
            if w.startswith(LABEL_PREFIX)
            else w.decode("utf-8", "replace")
            for w in words[nwords:]
        ]
        self.minn, self.maxn, self.bucket, self.nwords = minn, maxn, bucket, nwords
        self.prune = prune if prune is not None else np.arange(bucket, dtype=np.int32)
        # vocabulary: open addressing over fastText's hash, keys compared byte for byte
        table_size = 1 << max(4, (2 * size).bit_length())
        self.table = np.full(table_size, -1, dtype=np.int32)
        self.word_hash = np.zeros(size, dtype=np.uint32)
        self.word_bytes = np.frombuffer(b"".join(words), dtype=np.uint8).copy()
        self.word_offsets = np.zeros(size + 1, dtype=np.int64)
        subwords, sub_offsets = [], [0]
        for i, word in enumerate(words):
            h = fasttext_hash(word)
            self.word_hash[i] = h
            self.word_offsets[i + 1] = self.word_offsets[i] + len(word)
            slot = h & (table_size - 1)
            while self.table[slot] != -1:
                slot = (slot + 1) & (table_size - 1)
            self.table[slot] = i
            rows = [i] if i < nwords else []
            if i < nwords and word != EOS:
                rows += _subword_rows(b"<" + word + b">", minn, maxn, bucket, nwords, prune)
            subwords.extend(rows)
            sub_offsets.append(len(subwords))
        self.subwords = np.asarray(subwords, dtype=np.int32)
        self.subword_offsets = np.asarray(sub_offsets, dtype=np.int64)
        self.tree_left, self.tree_right = _huffman_tree(np.asarray(counts[nwords:], dtype=np.int64))

    def predict_top1(self, data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(label index or -1 when the text has no input rows, probability) per text.

        ``data``/``offsets``: UTF-8 bytes and int64 offsets of the texts, each one
        line (newlines already replaced)."""
        return _predict(
            data,
            offsets,
            self.table,
            self.word_hash,
            self.word_bytes,
            self.word_offsets,
            self.nwords,
            self.subwords,
            self.subword_offsets,
            self.prune,
            self.minn,
            self.maxn,
            self.bucket,
            self.input,
            self.output,
            self.tree_left,
            self.tree_right,
        )


def _huffman_tree(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``HierarchicalSoftmaxLoss::buildTree``: children of each of the 2n-1 nodes (-1 for leaves)."""
    osz = len(counts)
    nodes = 2 * osz - 1
    left, right = np.full(nodes, -1, np.int32), np.full(nodes, -1, np.int32)
    count = np.full(nodes, 10**15, np.int64)
    count[:osz] = counts
    leaf, node = osz - 1, osz
    for i in range(osz, nodes):
        mini = [0, 0]
        for j in range(2):
            if leaf >= 0 and count[leaf] < count[node]:
                mini[j], leaf = leaf, leaf - 1
            else:
                mini[j], node = node, node + 1
        left[i], right[i] = mini
        count[i] = count[mini[0]] + count[mini[1]]
    return left, right


@numba.njit(cache=True, inline="always")
def _fnv32(h, byte):
    signed = np.int64(byte) - 256 if byte > 127 else np.int64(byte)
    return ((h ^ (signed & 0xFFFFFFFF)) * _FNV32_PRIME) & 0xFFFFFFFF


@numba.njit(cache=True, inline="always")
def _is_space(b):
    return b == 32 or b == 10 or b == 13 or b == 9 or b == 11 or b == 12 or b == 0


@numba.njit(cache=True, inline="always")
def _add_row(hidden, matrix, row):
    for k in range(hidden.shape[0]):
        hidden[k] += matrix[row, k]


@numba.njit(cache=True)
def _lookup(data, start, end, h, table, word_hash, word_bytes, word_offsets):
    mask = table.shape[0] - 1
    slot = h & mask
    while table[slot] != -1:
        w = table[slot]
        if word_hash[w] == h and word_offsets[w + 1] - word_offsets[w] == end - start:
            same = True
            base = word_offsets[w]
            for k in range(end - start):
                if word_bytes[base + k] != data[start + k]:
                    same = False
                    break
            if same:
                return w
        slot = (slot + 1) & mask
    return -1


@numba.njit(cache=True)
def _ngram_rows(data, start, end, minn, maxn, bucket, nwords, prune, hidden, matrix):
    """Add the rows of the n-grams of ``<data[start:end]>``; returns how many were added."""
    added = 0
    size = end - start + 2  # with '<' and '>'
    for i in range(size):
        bi = 60 if i == 0 else (62 if i == size - 1 else data[start + i - 1])
        if bi & 0xC0 == 0x80:
            continue
        h = np.int64(_FNV32_OFFSET)
        j, n = i, 1
        while j < size and n <= maxn:
            b = 60 if j == 0 else (62 if j == size - 1 else data[start + j - 1])
            h = _fnv32(h, b)
            j += 1
            while j < size:
                b = 60 if j == 0 else (62 if j == size - 1 else data[start + j - 1])
                if b & 0xC0 != 0x80:
                    break
                h = _fnv32(h, b)
                j += 1
            if n >= minn and not (n == 1 and (i == 0 or j == size)):
                row = prune[h % bucket]
                if row >= 0:
                    _add_row(hidden, matrix, nwords + row)
                    added += 1
            n += 1
    return added


@numba.njit(cache=True)
def _predict(
    data,
    offsets,
    table,
    word_hash,
    word_bytes,
    word_offsets,
    nwords,
    subwords,
    subword_offsets,
    prune,
    minn,
    maxn,
    bucket,
    matrix,
    output,
    tree_left,
    tree_right,
):
    n_texts = offsets.shape[0] - 1
    labels = np.full(n_texts, -1, dtype=np.int32)
    probs = np.zeros(n_texts, dtype=np.float32)
    dim = matrix.shape[1]
    osz = output.shape[0]
    hidden = np.zeros(dim, dtype=np.float32)
    eos = np.array([60, 47, 115, 62], dtype=np.uint8)  # "</s>"
    eos_hash = np.int64(_FNV32_OFFSET)
    for b in eos:
        eos_hash = _fnv32(eos_hash, b)
    eos_id = _lookup(eos, 0, 4, eos_hash, table, word_hash, word_bytes, word_offsets)
    log_floor = np.float32(np.log(1e-5))  # std_log(threshold 0)
    for t in range(n_texts):
        hidden[:] = 0
        count = 0
        pos, stop = offsets[t], offsets[t + 1]
        while pos < stop:
            while pos < stop and _is_space(data[pos]):
                pos += 1
            if pos >= stop:
                break
            start = pos
            h = np.int64(_FNV32_OFFSET)
            while pos < stop and not _is_space(data[pos]):
                h = _fnv32(h, data[pos])
                pos += 1
            w = _lookup(data, start, pos, h, table, word_hash, word_bytes, word_offsets)
            if w == eos_id:  # a literal "</s>" ends fastText's line
                break
            if w >= nwords:
                continue  # a label token
            if w >= 0:
                for k in range(subword_offsets[w], subword_offsets[w + 1]):
                    _add_row(hidden, matrix, subwords[k])
                count += subword_offsets[w + 1] - subword_offsets[w]
                continue
            if (
                pos - start >= 9
                and data[start] == 95
                and data[start + 1] == 95
                and data[start + 2] == 108
                and data[start + 3] == 97
                and data[start + 4] == 98
                and data[start + 5] == 101
                and data[start + 6] == 108
                and data[start + 7] == 95
                and data[start + 8] == 95
            ):
                continue  # "__label__...": fastText reads it as an unknown label
            count += _ngram_rows(data, start, pos, minn, maxn, bucket, nwords, prune, hidden, matrix)
        if eos_id >= 0:  # the line's end-of-sentence token (or the literal one that ended it)
            _add_row(hidden, matrix, eos_id)
            count += 1
        if count == 0:
            continue
        inv = np.float32(1.0 / count)
        for k in range(dim):
            hidden[k] = hidden[k] * inv
        # hierarchical softmax: depth-first, left child first, k = 1 (fastText's dfs)
        stack_node = np.empty(2 * osz, dtype=np.int32)
        stack_score = np.empty(2 * osz, dtype=np.float32)
        stack_node[0], stack_score[0] = 2 * osz - 2, np.float32(0.0)
        depth = 1
        best, best_score = -1, np.float32(0.0)
        while depth > 0:
            depth -= 1
            node, score = stack_node[depth], stack_score[depth]
            if score < log_floor:
                continue
            if best >= 0 and score < best_score:
                continue
            if tree_left[node] == -1 and tree_right[node] == -1:
                best, best_score = node, score
                continue
            d = np.float32(0.0)
            for k in range(dim):
                d += output[node - osz, k] * hidden[k]
            # C++: real f = 1. / (1 + std::exp(-f)), expf then a double division;
            # std_log(real x) = std::log(x + 1e-5) in double, returned as float
            f = np.float32(1.0 / np.float64(np.float32(1.0) + np.exp(-d)))
            # right pushed first so the left subtree is searched first
            stack_node[depth], stack_score[depth] = tree_right[node], score + np.float32(np.log(np.float64(f) + 1e-5))
            stack_node[depth + 1], stack_score[depth + 1] = (
                tree_left[node],
                score + np.float32(np.log(np.float64(np.float32(1.0 - np.float64(f))) + 1e-5)),
            )
            depth += 2
        labels[t], probs[t] = best, np.exp(best_score)
    return labels, probs
