"""Educational-quality scoring: hand features, hashed TF-IDF, a linear model.

What "educational" means here: text written to explain -- textbook sections,
academic writing, how-to guides, biographies and travel guides (the
educational genres of the labelled real data) -- as opposed to reviews, email,
forum answers, newsgroup and weblog posts, conversation and spam/boilerplate.
It is a genre judgement learned from a few thousand documents, not a judgement
of truth or of difficulty; see ``MODEL_CARD.md`` of the shipped model.

Two feature families, computed for a whole batch at once:
* hand features of the reference design (``HAND_FEATURES``): code blocks,
  headers, list items, worked examples, average sentence length, unique-word
  ratio, technical-term density, explanation and noise markers, word and
  paragraph counts.  Marker counts use Arrow's vectorized regex kernels.
* hashed TF-IDF of words and word bigrams (``HashingParams``: stateless, so
  only the IDF vector and the coefficients are stored; tokens and hashes come
  from the compiled tokenizer shared with near-dedup).

Model types (``model_type``): ``features`` (logistic regression on the
standardized hand features), ``tfidf`` (logistic regression on TF-IDF), and
``ensemble`` (one logistic regression over both, the default).  A model may
strip markdown cues before featurizing (``preprocess``: the shipped one does,
so a section scores alike with or without its headers and bullets), and may
carry a calibration map of its decision value (isotonic, fitted on
out-of-fold decision values); without one, ``predict_proba`` of the logistic
regression is the score in [0, 1].

Models are stored without pickle: ``model.json`` (type, feature names, scaler,
coefficients, hashing parameters, preprocessing, calibration map) and
``weights.npz`` (float arrays, loaded with ``allow_pickle=False``), plus
``MODEL_CARD.md``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from curate.classifiers.feature_kernels import (
    ascii_class_counts,
    hashed_ngram_csr,
    markdown_counts,
    tfidf_dot,
    word_counts,
)
from curate.classifiers.minhash import as_string_array as _string_array
from curate.classifiers.minhash import normalized_buffers, string_buffers, text_token_hashes
from curate.classifiers.normalize_kernels import whitespace_table

# 3: optional markdown stripping before featurizing and a calibration map of the
#    decision value (model.json "preprocess", "calibration"); 2 files still load
# 2: n-gram hashing by curate's tokenizer kernel (1: scikit-learn's HashingVectorizer)
FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (2, 3)
PREPROCESSING = ("none", "strip_markdown")
MODEL_TYPES = ("features", "tfidf", "ensemble")
# Loading refuses files larger than these (a model is a few MB).
MAX_JSON_BYTES = 5 * 1024**2
MAX_WEIGHTS_BYTES = 256 * 1024**2

EXPLANATION_MARKERS = [
    "because",
    "therefore",
    "this means",
    "in other words",
    "note that",
    "for example",
    "for instance",
    "that is",
    "thus",
    "hence",
    "consequently",
    "as a result",
    "in general",
    "recall that",
    "suppose",
    "consider",
    "is defined as",
    "refers to",
    "is called",
    "we can",
    "in this section",
    "the reason",
]
NOISE_MARKERS = [
    "click here",
    "subscribe",
    "cookie",
    "advertisement",
    "sign up",
    "buy now",
    "free shipping",
    "add to cart",
    "all rights reserved",
    "privacy policy",
    "unsubscribe",
    "log in",
    "login",
    "lol",
    "omg",
    "!!!",
    "limited time",
    "act now",
    "terms and conditions",
    "follow us",
]
EXAMPLE_MARKERS = ["example", "e.g.", "for instance", "exercise", "solution", "try it", "suppose"]
# A short lexicon of academic/technical vocabulary (Academic Word List style,
# plus common science and computing terms).
TECHNICAL_TERMS = sorted(
    set(
        """
analysis approach assume assumption concept conclude consist constant context data define definition
derive distribution element equation estimate evaluate evidence factor formula function hypothesis
identify indicate interpret method parameter principle procedure process proportion range ratio
region relationship require research respond significant similar source specific structure
theory variable variance algorithm argument array attribute boolean class compute condition
error expression integer iterate loop module object operator output input program return statement
string syntax value mean median mode probability sample population random standard deviation
interval confidence frequency correlation regression percentile quartile histogram experiment
observation measure unit energy force mass temperature pressure cell molecule species system
period century economy government population culture language process physical chemical
""".split()
    )
)

# The reference design's hand features (the first 11) plus five of ours that
# separate explaining from chatting (long words, first/second person, !/?,
# digits, capitals).
SEED_FEATURES = [
    "code_blocks",
    "headers",
    "list_items",
    "examples",
    "avg_sentence_words",
    "unique_word_ratio",
    "technical_density",
    "explanation_per_100w",
    "noise_per_100w",
    "log_words",
    "log_paragraphs",
]
HAND_FEATURES = [
    *SEED_FEATURES,
    "long_word_ratio",
    "first_second_person_per_100w",
    "exclaim_question_per_sentence",
    "digit_ratio",
    "upper_ratio",
]


def _alternation(phrases) -> str:
    return r"(?i)\b(?:" + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in phrases) + r")"


_EXPLANATION_RE = _alternation(EXPLANATION_MARKERS)
_NOISE_RE = (
    r"(?i)(?:\b(?:" + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in NOISE_MARKERS if p != "!!!") + r")\b|!!!)"
)
_EXAMPLE_RE = _alternation(EXAMPLE_MARKERS)
_TECH_RE = r"(?i)\b(?:" + "|".join(TECHNICAL_TERMS) + r")s?\b"
_PERSON_RE = r"(?i)\b(?:i|me|my|you|your|we|us|our|i'm|you're|lol)\b"
# The structural counts, by their definition as RE2 patterns; computed by one
# compiled pass (``feature_kernels.markdown_counts``, tested equal to these on the
# real documents and on fuzzed markdown), not six regex passes.
MARKDOWN_PATTERNS = {
    "sentences": r"[.!?]+(?:\s|$)",
    "fences": r"(?m)^\s*```",
    "headers": r"(?m)^#{1,6}\s+\S",
    "list_items": r"(?m)^\s*(?:[-*+•]|\d+[.)])\s+\S",
    "paragraph_breaks": r"\n\s*\n",
    "long_words": r"\b[A-Za-z]{9,}\b",
}


def _count(texts: pa.Array, pattern: str) -> np.ndarray:
    return pc.count_substring_regex(texts, pattern=pattern).to_numpy(zero_copy_only=False).astype(np.float64)


def hand_features(texts: list[str] | pa.Array, normalized=None) -> np.ndarray:
    """(n, len(HAND_FEATURES)) float64 matrix for a batch of texts.

    Word counts come from the compiled kernels over the NFKC/lower-cased text
    (``normalized``: its ``normalized_buffers``, when the caller has them);
    the markers from Arrow's regex kernels over the original text."""
    arr = _string_array(texts)
    norm_data, norm_offsets = normalized if normalized is not None else normalized_buffers(arr)
    counts, unique_counts = word_counts(norm_data, norm_offsets, whitespace_table())
    words, unique = counts.astype(np.float64), unique_counts.astype(np.float64)
    raw = string_buffers(arr)
    digits, upper, marks = ascii_class_counts(*raw).T.astype(np.float64)
    sentence_ends, fences, headers, list_items, paragraph_breaks, long_words = markdown_counts(*raw).T.astype(
        np.float64
    )
    chars = pc.utf8_length(arr).to_numpy(zero_copy_only=False).astype(np.float64)
    safe_words = np.maximum(words, 1.0)
    safe_chars = np.maximum(chars, 1.0)
    sentences = np.maximum(sentence_ends, 1.0)
    cols = {
        "code_blocks": np.floor(fences / 2),
        "headers": headers,
        "list_items": list_items,
        "examples": _count(arr, _EXAMPLE_RE),
        "avg_sentence_words": np.minimum(words / sentences, 100.0),
        # unique-word ratio falls with length; scale by sqrt(words) (Guiraud's index) to compare lengths
        "unique_word_ratio": unique / np.sqrt(safe_words),
        "technical_density": _count(arr, _TECH_RE) / safe_words,
        "explanation_per_100w": 100 * _count(arr, _EXPLANATION_RE) / safe_words,
        "noise_per_100w": 100 * _count(arr, _NOISE_RE) / safe_words,
        "log_words": np.log1p(words),
        "log_paragraphs": np.log1p(paragraph_breaks + (chars > 0)),
        "long_word_ratio": long_words / safe_words,
        "first_second_person_per_100w": 100 * _count(arr, _PERSON_RE) / safe_words,
        "exclaim_question_per_sentence": marks / sentences,
        "digit_ratio": digits / safe_chars,
        "upper_ratio": upper / safe_chars,
    }
    return np.column_stack([cols[name] for name in HAND_FEATURES])


# Markdown cues, as one RE2 pattern run by Arrow over a whole batch: a code
# fence line (the code stays), header marks, list bullets and numbers.  Only
# spaces and tabs around a cue are taken, so lines and paragraphs stay.
MARKDOWN_CUES = r"(?m)^[ \t]*(?:```[^\n]*(?:\n|$)|#{1,6}[ \t]+|(?:[-*+•]|\d+[.)])[ \t]+)"


def strip_markdown_batch(texts) -> pa.Array:
    """The texts with markdown cues removed (``MARKDOWN_CUES``), as an Arrow string array."""
    return pc.replace_substring_regex(_string_array(texts), pattern=MARKDOWN_CUES, replacement="")


def strip_markdown(text: str) -> str:
    """Remove markdown cues (headers, list bullets, code fences), keeping the words."""
    return strip_markdown_batch([text])[0].as_py()


@dataclasses.dataclass
class HashingParams:
    """Hashed bag of word n-grams (1..ngram_max) in ``n_features`` buckets.

    Tokens are the near-dedup tokenizer's (NFKC, lower-case, runs of word
    characters; single characters in CJK/Thai documents) and their hashes, so
    a document is tokenized by the same compiled kernel in both stages; an
    n-gram's bucket is the fmix64 of the polynomial of its token hashes.  This
    replaced scikit-learn's HashingVectorizer (a Python generator per token,
    ~60% of the quality stage's time) in model format 2.
    """

    n_features: int = 2**18
    ngram_max: int = 2

    def transform(self, texts, normalized=None) -> sp.csr_matrix:
        """(n_docs, n_features) float32 counts (``normalized``: as in ``hand_features``)."""
        hashes, offsets = text_token_hashes(texts, normalized)
        indptr, indices, counts = hashed_ngram_csr(
            hashes, np.asarray(offsets, dtype=np.int64), self.ngram_max, self.n_features
        )
        return sp.csr_matrix((counts, indices, indptr), shape=(len(offsets) - 1, self.n_features))


class QualityModel:
    """A trained linear quality model; ``score(texts) -> np.ndarray`` in [0, 1]."""

    def __init__(
        self,
        model_type: str,
        coef_hand: np.ndarray | None,
        coef_tfidf: np.ndarray | None,
        intercept: float,
        scaler_mean: np.ndarray | None,
        scaler_scale: np.ndarray | None,
        idf: np.ndarray | None,
        hashing: HashingParams,
        card: dict | None = None,
        preprocess: str = "none",
        calibration: dict | None = None,
    ):
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}")
        if preprocess not in PREPROCESSING:
            raise ValueError(f"preprocess must be one of {PREPROCESSING}")
        self.preprocess, self.calibration = preprocess, calibration and check_calibration(calibration)
        self.model_type, self.coef_hand, self.coef_tfidf = model_type, coef_hand, coef_tfidf
        self.intercept, self.scaler_mean, self.scaler_scale = float(intercept), scaler_mean, scaler_scale
        self.idf, self.hashing, self.card = idf, hashing, card or {}
        # what ``tfidf_dot`` reads: float64 copies, made once rather than per batch
        self._tfidf64 = (
            (idf.astype(np.float64), coef_tfidf.astype(np.float64))
            if idf is not None and coef_tfidf is not None
            else None
        )

    # ---- features -------------------------------------------------------
    def uses_hand(self) -> bool:
        return self.model_type in ("features", "ensemble")

    def uses_tfidf(self) -> bool:
        return self.model_type in ("tfidf", "ensemble")

    def prepare(self, texts) -> pa.Array:
        """The texts as the model featurizes them (markdown cues stripped when ``preprocess`` says so)."""
        texts = _string_array(texts)
        return strip_markdown_batch(texts) if self.preprocess == "strip_markdown" else texts

    def design_matrix(self, texts) -> sp.csr_matrix:
        texts = self.prepare(texts)
        return design_matrix(texts, self.model_type, self.hashing, self.idf, self.scaler_mean, self.scaler_scale)

    def decision(self, texts) -> np.ndarray:
        """The linear model's decision value: the design matrix's row times the
        coefficients, with the TF-IDF part's dot product computed straight from
        the token hashes (``feature_kernels.tfidf_dot``: no sparse matrix)."""
        texts = self.prepare(texts)
        normalized = normalized_buffers(texts)  # tokenized once for both feature families
        z = np.full(len(texts), self.intercept)
        if self.uses_hand():
            z += ((hand_features(texts, normalized) - self.scaler_mean) / self.scaler_scale) @ self.coef_hand
        if self.uses_tfidf():
            hashes, offsets = text_token_hashes(texts, normalized)
            z += tfidf_dot(hashes, np.asarray(offsets, dtype=np.int64), self.hashing.ngram_max, *self._tfidf64)
        return z

    def score(self, texts) -> np.ndarray:
        """Scores in [0, 1]: the calibration map of the decision value when the model
        has one (``calibrate``), else the logistic regression's probability."""
        return self.score_decision(self.decision(texts))

    def score_decision(self, z: np.ndarray) -> np.ndarray:
        if self.calibration:
            return calibrate(self.calibration, z).astype(np.float32)
        return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)

    # ---- persistence (no pickle) -----------------------------------------
    def save(self, directory: str | Path, card_markdown: str | None = None) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for name in ("coef_hand", "coef_tfidf", "scaler_mean", "scaler_scale", "idf"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = np.asarray(value, dtype=np.float32 if name in ("coef_tfidf", "idf") else np.float64)
        np.savez_compressed(d / "weights.npz", **arrays)
        meta = {
            "format": "curate-quality-linear",
            "format_version": FORMAT_VERSION,
            "model_type": self.model_type,
            "hand_features": HAND_FEATURES if self.uses_hand() else [],
            "hashing": dataclasses.asdict(self.hashing),
            "intercept": self.intercept,
            "card": self.card,
            "preprocess": self.preprocess,
            "calibration": self.calibration,
        }
        (d / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if card_markdown:
            (d / "MODEL_CARD.md").write_text(card_markdown)

    @classmethod
    def load(cls, directory: str | Path) -> "QualityModel":
        return load_model(directory)


class ModelFormatError(Exception):
    pass


def load_model(directory: str | Path) -> QualityModel:
    """Load and check a saved model: JSON + float arrays only, never pickle."""
    d = Path(directory)
    meta_path, weights_path = d / "model.json", d / "weights.npz"
    for path, limit in ((meta_path, MAX_JSON_BYTES), (weights_path, MAX_WEIGHTS_BYTES)):
        if not path.is_file():
            raise ModelFormatError(f"quality model {d}: {path.name} not found")
        if path.stat().st_size > limit:
            raise ModelFormatError(f"quality model {d}: {path.name} is larger than {limit} bytes")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"quality model {d}: model.json is not JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != "curate-quality-linear":
        raise ModelFormatError(f"quality model {d}: model.json is not a curate quality model")
    if meta.get("format_version") not in READABLE_FORMAT_VERSIONS or meta.get("model_type") not in MODEL_TYPES:
        raise ModelFormatError(f"quality model {d}: unsupported format_version or model_type")
    if meta.get("hand_features") and meta["hand_features"] != HAND_FEATURES:
        raise ModelFormatError(f"quality model {d}: trained on other hand features than this version computes")
    try:
        with np.load(weights_path, allow_pickle=False) as npz:  # object arrays (pickles) are refused here
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # refused, truncated or not an .npz
        raise ModelFormatError(
            f"quality model {d}: weights.npz refused: not a readable .npz of arrays ({exc})"
        ) from exc
    intercept = meta.get("intercept")
    if isinstance(intercept, bool) or not isinstance(intercept, (int, float)) or not math.isfinite(intercept):
        # a NaN intercept would score every document NaN: every one rejected, silently
        raise ModelFormatError(
            f"quality model {d}: model.json key intercept must be a finite number, got {intercept!r}"
        )
    hashing_meta = meta.get("hashing", {})
    if not isinstance(hashing_meta, dict) or not all(
        isinstance(hashing_meta[k], int) and not isinstance(hashing_meta[k], bool) and hashing_meta[k] > 0
        for k in ("n_features", "ngram_max")
        if k in hashing_meta
    ):
        raise ModelFormatError(f"quality model {d}: model.json key hashing must hold positive integers")
    for name, value in arrays.items():
        if value.dtype.kind != "f" or value.ndim != 1 or not np.all(np.isfinite(value)):
            raise ModelFormatError(f"quality model {d}: array {name} must be a finite 1-d float array")
    hashing = HashingParams(
        **{k: int(v) for k, v in meta.get("hashing", {}).items() if k in ("n_features", "ngram_max")}
    )
    model_type = meta["model_type"]
    expect = {}
    if model_type in ("features", "ensemble"):
        expect.update(coef_hand=len(HAND_FEATURES), scaler_mean=len(HAND_FEATURES), scaler_scale=len(HAND_FEATURES))
    if model_type in ("tfidf", "ensemble"):
        expect.update(coef_tfidf=hashing.n_features, idf=hashing.n_features)
    for name, size in expect.items():
        if name not in arrays or arrays[name].shape != (size,):
            raise ModelFormatError(f"quality model {d}: array {name} missing or not of length {size}")
    preprocess = meta.get("preprocess", "none")
    if preprocess not in PREPROCESSING:
        raise ModelFormatError(f"quality model {d}: unknown preprocess {preprocess!r}")
    try:
        calibration = check_calibration(meta["calibration"]) if meta.get("calibration") else None
    except ValueError as exc:
        raise ModelFormatError(f"quality model {d}: {exc}") from exc
    return QualityModel(
        model_type,
        arrays.get("coef_hand"),
        arrays.get("coef_tfidf"),
        float(intercept),
        arrays.get("scaler_mean"),
        arrays.get("scaler_scale"),
        arrays.get("idf"),
        hashing,
        meta.get("card"),
        preprocess,
        calibration,
    )


def check_calibration(cal: dict) -> dict:
    """A calibration map as stored in model.json: ``{"method": "isotonic", "x": [...], "y": [...]}``
    (piecewise linear through (x, y), x increasing, y non-decreasing in [0, 1]) or
    ``{"method": "platt", "a": a, "b": b}`` (sigmoid(a * z + b))."""
    if not isinstance(cal, dict) or cal.get("method") not in ("isotonic", "platt"):
        raise ValueError("calibration must be {'method': 'isotonic'|'platt', ...}")
    if cal["method"] == "platt":
        if not all(isinstance(cal.get(k), (int, float)) and math.isfinite(cal[k]) for k in ("a", "b")):
            raise ValueError("platt calibration needs finite numbers a and b")
        return {"method": "platt", "a": float(cal["a"]), "b": float(cal["b"])}
    x, y = np.asarray(cal.get("x", []), dtype=np.float64), np.asarray(cal.get("y", []), dtype=np.float64)
    if (
        x.ndim != 1
        or x.shape != y.shape
        or len(x) < 2
        or not np.all(np.isfinite(x))
        or not np.all(np.isfinite(y))
        or np.any(np.diff(x) <= 0)
        or np.any(np.diff(y) < 0)
        or y.min() < 0
        or y.max() > 1
    ):
        raise ValueError("isotonic calibration needs increasing x and non-decreasing y in [0, 1] of one length >= 2")
    return {"method": "isotonic", "x": x.tolist(), "y": y.tolist()}


def calibrate(cal: dict, z: np.ndarray) -> np.ndarray:
    """Apply a calibration map (``check_calibration``) to decision values."""
    z = np.asarray(z, dtype=np.float64)
    if cal["method"] == "platt":
        return 1.0 / (1.0 + np.exp(-np.clip(cal["a"] * z + cal["b"], -50, 50)))
    return np.interp(z, cal["x"], cal["y"])


def default_model_dir() -> str:
    return str(resources.files("curate.classifiers").joinpath("models", "edu_quality"))


def design_matrix(
    texts, model_type: str, hashing: HashingParams, idf, scaler_mean, scaler_scale, normalized=None
) -> sp.csr_matrix:
    blocks = []
    texts = _string_array(texts)
    if normalized is None:
        normalized = normalized_buffers(texts)  # tokenized once for both feature families
    if model_type in ("features", "ensemble"):
        hand = (hand_features(texts, normalized) - scaler_mean) / scaler_scale
        blocks.append(sp.csr_matrix(hand))
    if model_type in ("tfidf", "ensemble"):
        blocks.append(_tfidf_rows(hashing.transform(texts, normalized), idf))
    return sp.hstack(blocks, format="csr")


@dataclasses.dataclass
class Features:
    """The stateless part of a model's features for a set of documents: raw hand
    features and hashed n-gram counts (either may be None, by model type).  The
    scaler and the IDF are fitted per training set (``fit``), so one
    ``featurize`` serves every fold of a cross-validation."""

    hand: np.ndarray | None
    counts: sp.csr_matrix | None

    def take(self, rows) -> "Features":
        return Features(
            None if self.hand is None else self.hand[rows], None if self.counts is None else self.counts[rows]
        )


def featurize(
    texts, model_type: str = "ensemble", hashing: HashingParams | None = None, preprocess: str = "none"
) -> Features:
    hashing = hashing or HashingParams()
    texts = _string_array(texts)
    if preprocess == "strip_markdown":
        texts = strip_markdown_batch(texts)
    normalized = normalized_buffers(texts)  # once, for both feature families
    hand = hand_features(texts, normalized) if model_type in ("features", "ensemble") else None
    counts = hashing.transform(texts, normalized) if model_type in ("tfidf", "ensemble") else None
    return Features(hand, counts)


def fit(
    features: Features,
    labels,
    model_type: str = "ensemble",
    C: float = 4.0,
    hashing: HashingParams | None = None,
    preprocess: str = "none",
    sample_weight=None,
    hand_weight: float = 1.0,
    card: dict | None = None,
) -> QualityModel:
    """Fit the scaler, the IDF and a logistic regression (liblinear, balanced classes,
    fixed seed: deterministic) on featurized documents.  ``hand_weight`` scales the
    standardized hand features against the unit-norm TF-IDF row (a per-block
    regularization strength); it is folded into the stored coefficients."""
    from sklearn.linear_model import LogisticRegression

    hashing = hashing or HashingParams()
    labels = np.asarray(labels, dtype=int)
    blocks = []
    scaler_mean = scaler_scale = idf = None
    if model_type in ("features", "ensemble"):
        scaler_mean = features.hand.mean(axis=0)
        scaler_scale = features.hand.std(axis=0)
        scaler_scale[scaler_scale == 0] = 1.0
        blocks.append(sp.csr_matrix(hand_weight * (features.hand - scaler_mean) / scaler_scale))
    if model_type in ("tfidf", "ensemble"):
        counts = features.counts
        df = np.bincount(counts.indices, minlength=hashing.n_features)
        idf = (np.log((1 + counts.shape[0]) / (1 + df)) + 1).astype(np.float32)
        blocks.append(_tfidf_rows(counts, idf))
    x = sp.hstack(blocks, format="csr")
    clf = LogisticRegression(C=C, solver="liblinear", max_iter=1000, class_weight="balanced", random_state=0)
    clf.fit(x, labels, sample_weight=sample_weight)
    coef = clf.coef_.ravel()
    n_hand = len(HAND_FEATURES) if model_type in ("features", "ensemble") else 0
    coef_hand = coef[:n_hand] * hand_weight if n_hand else None
    coef_tfidf = coef[n_hand:].astype(np.float32) if model_type != "features" else None
    card = dict(card or {})
    card.setdefault("train_documents", int(len(labels)))
    card.setdefault("positives", int(labels.sum()))
    return QualityModel(
        model_type,
        coef_hand,
        coef_tfidf,
        float(clf.intercept_[0]),
        scaler_mean,
        scaler_scale,
        idf,
        hashing,
        card,
        preprocess,
    )


def _tfidf_rows(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear TF-IDF rows, L2-normalized (what ``tfidf_dot`` computes per document)."""
    counts = counts.copy()
    counts.data = np.log1p(counts.data)  # sublinear tf
    tfidf = counts.multiply(idf.reshape(1, -1)).tocsr()
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1))).ravel()
    norms[norms == 0] = 1.0
    return (sp.diags(1.0 / norms) @ tfidf).tocsr()


def train(
    texts: list[str],
    labels: np.ndarray,
    model_type: str = "ensemble",
    C: float = 4.0,
    hashing: HashingParams | None = None,
    card: dict | None = None,
    preprocess: str = "none",
    sample_weight=None,
    hand_weight: float = 1.0,
) -> QualityModel:
    """Featurize and ``fit``; deterministic (liblinear, fixed seed, fixed data order)."""
    hashing = hashing or HashingParams()
    card = dict(card or {})
    card.setdefault("trained_utc", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return fit(
        featurize(texts, model_type, hashing, preprocess),
        labels,
        model_type,
        C,
        hashing,
        preprocess,
        sample_weight,
        hand_weight,
        card,
    )


def group_balanced_weights(groups) -> np.ndarray:
    """Sample weights under which every group (a book, a genre, a source) weighs the same in
    total, scaled to a mean of 1.

    Why: the model is judged on text of kinds it never saw, so what it should learn is the
    boundary between kinds of text, not between the most numerous documents.  Unweighted, a
    large book or a common genre pulls the boundary its way and a genre of nine documents
    barely counts.  ``fit``'s balanced class weights still apply on top: the classes stay
    balanced, and within a class the groups are equal."""
    _, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return weights * (len(weights) / weights.sum())


def roc_auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def precision_recall_at(labels, scores, threshold: float) -> dict:
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    tp = int((predicted & labels).sum())
    precision = tp / predicted.sum() if predicted.sum() else math.nan
    recall = tp / labels.sum() if labels.sum() else math.nan
    return {
        "threshold": threshold,
        "precision": round(float(precision), 4),
        "recall": round(float(recall), 4),
        "selected": int(predicted.sum()),
    }
