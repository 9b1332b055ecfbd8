"""Paraphrased-benchmark decontamination: find a rephrased test item inside a page.

An n-gram index (``ngram_index``) finds copies; a rephrased item shares few
13-grams with its original and passes.  This module compares meaning:

1. **Candidate spans.**  An item sits inside a longer page, and a page vector is
   dominated by the page, so each document is cut into spans: every paragraph
   (a block between blank lines, up to ``max_paragraph`` word pieces -- a copied
   item usually keeps its own block) and sliding windows of 64 and 160 word
   pieces (stride half a window) for items run into the surrounding text.
2. **Nearest neighbours, exact.**  Spans are embedded (``embedding.Embedder``)
   and multiplied by the matrix of item vectors; each item has several views --
   the question alone and the question with its answer, since a page may carry
   either (and, for a question that follows a reading passage, the question line
   alone).  All of GSM8K + HumanEval + MMLU is ~32k views x 384 floats (~50 MB): the
   product is exact and cheap next to embedding the spans.  Past about a million
   views, or when the index no longer fits a worker as a side input, switch to an
   ANN index (FAISS IVF-PQ or HNSW, top-k per span); the verification is unchanged.
   Per document the ``max_candidates`` nearest items (cosine >= ``min_similarity``)
   are kept, each with its best span.
3. **Verification** separates a rephrased test item from a merely similar
   problem (same story with other quantities or another question, a textbook
   exercise on the same topic).  Features (``Verifier.FEATURES``):

   - the cosine of span and item;
   - the *margin*: that cosine minus the best cosine of any other item to the
     same document (floor ``min_similarity``).  A rephrased item is near one item;
     a generic question ("Which of the following is true?", a textbook exercise on
     a common topic) is about as near to several, and its margin is small;
   - *coverage*: the idf-weighted share of an item view's content words (6-letter
     stems) found in the span, for the item's best-covered view (a page may quote
     only the question line after a reading passage, or the answer with it);
   - the share of the item's numbers found in the span, and whether the item has
     numbers: a rephrasing keeps the quantities, another problem changes them;
   - *signature*: for a code item, the overlap of the type annotations of its
     function signature with those of the signatures in and just above the span
     (a rephrased function renames itself and its arguments but keeps its contract:
     ``List[int] -> bool``; a textbook function on the same task rarely carries
     the same annotations).  0 when the item has no annotated signature;
   - *examples*: for an item whose text calls a function on literals only (the
     docstring examples of a code task: ``f([1.0, 2.0, 3.0], 0.5)``), the overlap
     of the shapes of those calls, literals replaced by their kind
     (``[N,N,N],N``), with the shapes of such calls in and around the span,
     each shape weighted by its rarity among the items.  A rephrased task renames
     the function and changes every value but keeps how many arguments of which
     kind its examples take; a function on the same topic tested on other inputs
     does not.  0 when the item has no such call;
   - *token alignment* (BERTScore, Zhang et al. 2020): the word-piece vectors of the
     span and of the item's view (``Embedder.embed_tokens``, the same forward pass
     before pooling), each item piece matched to its most similar span piece.
     ``token_recall`` is the mean of those best cosines, ``token_recall_idf`` the
     same weighted by each piece's rarity among the items, ``token_precision`` the
     mean best cosine of the span's pieces to the view; the view with the highest
     weighted recall is taken.  A pooled vector says two texts are about the same
     thing; a rephrasing also says each of its parts again, which the alignment
     sees and a question on the same topic does not have.  Computed only for
     candidates at or above their format's similarity floor (the others are never
     accepted) of a format whose model uses it, so it costs one more forward pass
     per such span, not per document.  ``benchmarks/semantic_eval.py`` gives it to a
     format only where cross-validation on dev shows it adds recall at no more
     false positives.

   A logistic model per benchmark format with its own similarity floor and
   threshold, fitted by ``benchmarks/semantic_eval.py`` on the dev split of items,
   hosts and negatives and stored in ``models/paraphrase/verifier.json``, decides.

Cost: the spans cover every word piece about four times, so the stage costs ~4x
embedding the document once; it is meant to run after the cheap stages (and
n-gram decontamination) have shrunk the corpus, or on a GPU.

API: ``ParaphraseIndex.build([(name, format, path), ...])`` then
``index.match_batch(texts)`` -> per document ``None`` or
``ParaphraseHit(benchmark, item_id, similarity, score, span)``; ``span`` is the
(start, end) character offsets of the matched span in the document.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from curate.classifiers.embedding import Embedder, default_embedder

VERIFIER_PATH = Path(__file__).resolve().parent / "models" / "paraphrase" / "verifier.json"

_WORD = re.compile(r"[^\W\d_]+|\d+(?:[.,]\d+)*", re.UNICODE)
_PARAGRAPH = re.compile(r"\S(?:.|\n(?![ \t]*\n))*")  # a block of lines without a blank line
_NUM = re.compile(r"\d+(?:[.,]\d+)*")
# a Python function signature: its parameters and its return annotation
_SIGNATURE = re.compile(r"\bdef\s+\w+\s*\((.*?)\)\s*(?:->\s*([^:\n]+))?:", re.S)
_IDENT = re.compile(r"[A-Za-z_]\w*")
SIGNATURE_CONTEXT = (400, 200)  # characters before / after a span searched for signatures and examples
_CALL = re.compile(r"\b[A-Za-z_]\w*\s*\(")
_LITERAL = re.compile(r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?""")
_CONSTANTS = frozenset({"True", "False", "None"})
STEM = 6
STOP = frozenset(
    """
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just let me more most my myself no nor
not now of off on once only or other our ours ourselves out over own same she should so some such than that
the their theirs them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself yourselves also
many much each every per one two three four five six seven eight nine ten question answer following true
false return returns def none self print int str float list given example examples number numbers
""".split()
)


def normalize_number(tok: str) -> str:
    tok = tok.replace(",", "")
    if "." in tok:
        tok = tok.rstrip("0").rstrip(".") or "0"
    return tok


def content_tokens(text: str) -> list[tuple[str, int, int]]:
    """(key, start, end) of each content word / number of ``text``.

    Keys: numbers normalized ("1,000" -> "1000", "2.50" -> "2.5") and prefixed
    with '#'; words lower-cased and cut to ``STEM`` letters; stop words and
    single letters dropped (they carry no topic).
    """
    out = []
    for m in _WORD.finditer(text):
        tok = m.group()
        if tok[0].isdigit():
            out.append(("#" + normalize_number(tok), m.start(), m.end()))
            continue
        low = tok.lower()
        if len(low) < 2 or low in STOP:
            continue
        out.append((low[:STEM], m.start(), m.end()))
    return out


def numbers_of(text: str) -> set[str]:
    return {normalize_number(t) for t in _NUM.findall(text)}


def signature_types(text: str) -> Counter:
    """Multiset of the identifiers in the type annotations of the function signatures
    of ``text`` (``def f(xs: List[int], k: int) -> bool:`` -> List, int, int, bool);
    parameter and function names are left out, since a rephrasing renames them."""
    out: Counter = Counter()
    for params, ret in _SIGNATURE.findall(text):
        for p in params.split(","):
            if ":" in p:
                out.update(_IDENT.findall(p.split(":", 1)[1].split("=", 1)[0]))
        out.update(_IDENT.findall(ret or ""))
    return out


def _call_arguments(text: str, open_at: int) -> str | None:
    """The text between the parenthesis at ``open_at`` and its match (None: unclosed within 300 characters)."""
    depth = 0
    for i in range(open_at, min(len(text), open_at + 300)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def example_shapes(text: str) -> Counter:
    """Multiset of the shapes of the calls of ``text`` whose arguments are literals only
    (``f([1.0, 2.0], 'ab')`` -> ``[N,N],S``): how a task's examples call it.  A call
    naming a variable is code, not an example, and is left out."""
    out: Counter = Counter()
    for m in _CALL.finditer(text):
        args = _call_arguments(text, m.end() - 1)
        if not args or not args.strip():
            continue
        shape = _LITERAL.sub(lambda x: "S" if x.group()[0] in "'\"" else "N", args)
        if set(_IDENT.findall(shape)) - {"S", "N"} - _CONSTANTS:
            continue
        out["".join(shape.split())] += 1
    return out


def weighted_overlap(want: Counter, got: Counter, weight) -> float:
    """Weighted multiset Jaccard: sum of min counts over sum of max counts, each key weighed by ``weight``."""
    keys = set(want) | set(got)
    union = sum(max(want[k], got[k]) * weight(k) for k in keys)
    return sum(min(want[k], got[k]) * weight(k) for k in keys) / union if union else 0.0


# ---------------------------------------------------------------------------- items
@dataclasses.dataclass
class Item:
    benchmark: str  # benchmark name (as configured)
    fmt: str  # loader format: gsm8k, humaneval, mmlu, ...
    item_id: str
    views: list[str]  # texts embedded for this item; views[0] is the question alone


VIEW_CHUNK = 512  # item views embedded together: a fixed cut, so the vectors do not depend on who embeds them


def item_views(items: list[Item]) -> list[str]:
    """Every view of every item, in index order (the rows of ``view_vectors``)."""
    return [v for it in items for v in it.views]


def view_chunks(items: list[Item]) -> list[tuple[int, list[str]]]:
    """(first row, views) in chunks of ``VIEW_CHUNK``: the unit of work when the views are
    embedded in parallel; ``embed_views`` embeds the same chunks, so either way gives the
    same vectors (a batch's padding and order depend on its texts)."""
    views = item_views(items)
    return [(s, views[s : s + VIEW_CHUNK]) for s in range(0, len(views), VIEW_CHUNK)]


def stack_chunks(chunks) -> np.ndarray:
    """The view vectors from (first row, vectors) chunks, in any order."""
    parts = [v for _, v in sorted(chunks, key=lambda c: c[0])]
    return np.concatenate(parts) if parts else np.zeros((0, 384), np.float32)


def embed_views(items: list[Item], embedder: Embedder) -> np.ndarray:
    return stack_chunks((first, embedder.embed(views)) for first, views in view_chunks(items))


def _gsm8k_final(answer: str) -> str:
    return answer.rsplit("####", 1)[-1].strip() if "####" in answer else ""


def load_item_views(benchmark: str, fmt: str, path: str, files=None) -> list[Item]:
    """Items of a benchmark file with the views to embed.

    Ids are those of ``benchmark_sets.load_items`` (so a paraphrase hit and an
    n-gram hit name an item the same way).  gsm8k: question; question + final
    answer.  humaneval: prompt; prompt + canonical solution.  mmlu: question;
    question + the gold choice.  Other formats: the loader's text, one view.
    ``files``: how to read it (``benchmark_sets.LocalFiles`` by default).
    """
    from curate.classifiers import benchmark_sets as bs

    items: list[Item] = []
    if fmt == "gsm8k":
        for n, r in bs._jsonl(path, files):
            bs._need(r, ["question", "answer"], path, n, fmt)
            q = r["question"]
            items.append(Item(benchmark, fmt, f"gsm8k/{n}", [q, q + "\n" + _gsm8k_final(r["answer"])]))
    elif fmt == "humaneval":
        for n, r in bs._jsonl(path, files):
            bs._need(r, ["prompt", "canonical_solution"], path, n, fmt)
            p = r["prompt"]
            items.append(Item(benchmark, fmt, r.get("task_id", f"humaneval/{n}"), [p, p + r["canonical_solution"]]))
    elif fmt == "mmlu":
        for file in bs._files(path, (".csv",), files):
            subject = Path(file).name.removesuffix("_test.csv").removesuffix(".csv")
            for n, row in enumerate(csv.reader(io.StringIO(bs._open_text(file, files))), 1):
                if len(row) != 6:
                    raise bs.BenchmarkFormatError(f"{file}: row {n}: MMLU rows have 6 fields")
                q, gold = row[0], row[1 + "ABCD".index(row[5].strip())] if row[5].strip() in "ABCD" else ""
                views = [q, q + "\n" + gold]
                lines = [x for x in q.splitlines() if x.strip()]
                if len(lines) >= 3 and len(lines[-1].split()) >= 4:  # a passage, then the question:
                    views.append(lines[-1])  # a page may quote the question without the passage
                items.append(Item(benchmark, fmt, f"mmlu/{subject}/{n}", views))
    else:
        for item_id, text in bs.load_items(fmt, path, files=files):
            items.append(Item(benchmark, fmt, item_id, [text]))
    return items


def load_benchmarks(benchmarks: list[tuple[str, str, str]], files=None) -> list[Item]:
    """The items of every (name, format, path), in that order (``load_item_views``)."""
    return [it for name, fmt, path in benchmarks for it in load_item_views(name, fmt, path, files)]


# ---------------------------------------------------------------------------- verifier
@dataclasses.dataclass
class Verifier:
    """Logistic score over ``FEATURES`` per format."""

    models: dict  # fmt -> {"w": [...], "b": float, "threshold": float}; "*" is the fallback

    FEATURES = (
        "similarity",
        "margin",
        "coverage",
        "number_recall",
        "has_numbers",
        "signature",
        "examples",
        "token_recall",
        "token_recall_idf",
        "token_precision",
    )

    @classmethod
    def load(cls, path: Path = VERIFIER_PATH) -> "Verifier":
        data = json.loads(Path(path).read_text())
        if tuple(data.get("features", ())) != cls.FEATURES:
            raise ValueError(
                f"{path}: verifier fitted on features {data.get('features')}, this version computes "
                f"{list(cls.FEATURES)}: re-fit it with benchmarks/semantic_eval.py"
            )
        return cls(data["models"])

    def save(self, path: Path = VERIFIER_PATH, **meta):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"features": list(self.FEATURES), "models": self.models, **meta}, indent=1, sort_keys=True)
            + "\n"
        )

    def model(self, fmt: str) -> dict:
        return self.models.get(fmt) or self.models["*"]

    def score(self, fmt: str, feats: np.ndarray) -> float:
        m = self.model(fmt)
        z = float(np.dot(m["w"], feats) + m["b"])
        return 1.0 / (1.0 + math.exp(-z))

    def uses(self, fmt: str, prefix: str) -> bool:
        """Whether the format's model weighs any feature whose name starts with ``prefix``."""
        w = self.model(fmt)["w"]
        return any(w[i] != 0 for i, f in enumerate(self.FEATURES) if f.startswith(prefix))

    def accept(self, fmt: str, score: float, similarity: float) -> bool:
        m = self.model(fmt)
        return similarity >= m.get("min_similarity", 0.0) and score >= m["threshold"]


@dataclasses.dataclass
class ParaphraseHit:
    benchmark: str
    item_id: str
    similarity: float  # cosine of span and the nearest view of the item
    score: float  # verifier probability
    span: tuple[int, int]  # character offsets of the matched span in the document


@dataclasses.dataclass
class Candidate:
    """A (document, item) pair near enough to verify, with its verification features."""

    doc: int
    item: int
    span: tuple[int, int]
    similarity: float = 0.0
    margin: float = 0.0
    coverage: float = 0.0
    number_recall: float = 1.0
    has_numbers: float = 0.0
    signature: float = 0.0
    examples: float = 0.0
    token_recall: float = 0.0
    token_recall_idf: float = 0.0
    token_precision: float = 0.0

    def features(self) -> np.ndarray:
        return np.array([getattr(self, f) for f in Verifier.FEATURES])


class ParaphraseIndex:
    """Benchmark items, their lexical bags and their view vectors."""

    def __init__(
        self,
        items: list[Item],
        embedder: Embedder | None = None,
        window_sizes: tuple[tuple[int, int], ...] = ((64, 32), (160, 80)),
        min_similarity: float = 0.5,
        max_candidates: int = 5,
        max_paragraph: int = 250,
        verifier: Verifier | None = None,
        view_vectors: np.ndarray | None = None,
    ):
        from scipy import sparse

        self.items = items
        self.embedder = embedder or default_embedder()
        self.window_sizes = tuple(tuple(w) for w in window_sizes)
        self.min_similarity = min_similarity
        self.max_paragraph = max_paragraph
        self.max_candidates = max_candidates
        self._verifier = verifier
        # lexical bags, one row per (item, view); idf over items (a word in every view
        # of one item counts once)
        vocab: dict[str, int] = {}
        rows: list[set[int]] = []  # content-word ids of each (item, view)
        self.item_numbers: list[set[str]] = []
        self.item_signature: list[Counter] = []
        self.item_examples: list[Counter] = []
        first_view = []  # row of each item's first view
        df: Counter = Counter()
        for i, it in enumerate(items):
            self.item_numbers.append(numbers_of(it.views[0]))
            self.item_signature.append(signature_types(it.views[0]))
            self.item_examples.append(example_shapes(it.views[0]))
            seen: set[int] = set()
            first_view.append(len(rows))
            for v in it.views:
                keys = {vocab.setdefault(k, len(vocab)) for k, _, _ in content_tokens(v)}
                seen |= keys
                rows.append(keys)
            df.update(seen)
        self.vocab = vocab
        shape_df: Counter = Counter()
        for shapes in self.item_examples:
            shape_df.update(set(shapes))
        # a shape few items' examples have says more: idf over items (a shape no item has weighs the most)
        self.shape_idf = {k: math.log((1 + len(items)) / (1 + n)) for k, n in shape_df.items()}
        self.unseen_shape_idf = math.log(1 + len(items))
        flat_rows = [r for r, keys in enumerate(rows) for _ in keys]
        flat_cols = [k for keys in rows for k in keys]
        dfa = np.zeros(len(vocab), np.float32)
        for k, n in df.items():
            dfa[k] = n
        self.idf = np.log((1 + len(items)) / (1 + dfa)).astype(np.float32) + 1.0
        m = sparse.csr_matrix(
            (self.idf[flat_cols], (flat_rows, flat_cols)), shape=(len(rows), len(vocab)), dtype=np.float32
        )
        self._view_rows = m  # (item, view) x vocab, idf-weighted
        self._first_view = np.array(first_view + [len(rows)], dtype=np.int64)
        self.view_mass = np.maximum(np.asarray(m.sum(axis=1)).ravel(), 1e-6).astype(np.float32)
        # view vectors: one row per (item, view)
        views = item_views(items)
        self.view_owner = np.repeat(np.arange(len(items), dtype=np.int64), [len(it.views) for it in items])
        if view_vectors is not None:  # embedded elsewhere (the stage embeds them once per run, in parallel)
            if view_vectors.shape != (len(views), 384):
                raise ValueError(f"view_vectors: {view_vectors.shape} for {len(views)} item views")
            self.view_vectors = np.asarray(view_vectors, np.float32)
        else:
            self.view_vectors = embed_views(items, self.embedder)

    @functools.cached_property
    def piece_idf(self) -> np.ndarray:
        """Word-piece idf over the items (first view), for the token alignment's weighted
        recall; computed on first use (tokenizing every item costs seconds at start-up, and
        only a format whose model weighs the alignment needs it)."""
        piece_df = np.zeros(self.embedder.tokenizer.get_vocab_size(), np.float32)
        for enc in self.embedder.tokenizer.encode_batch([it.views[0] for it in self.items]):
            piece_df[np.unique(np.array(enc.ids[1:-1], dtype=np.int64))] += 1
        return (np.log((1 + len(self.items)) / (1 + piece_df)) + 1.0).astype(np.float32)

    @classmethod
    def build(cls, benchmarks: list[tuple[str, str, str]], files=None, **kwargs) -> "ParaphraseIndex":
        """``benchmarks``: (name, format, path) as for the n-gram index; ``files``: how to
        read them (``load_item_views``)."""
        return cls(load_benchmarks(benchmarks, files), **kwargs)

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = Verifier.load()
        return self._verifier

    def __getstate__(self):
        return dict(self.__dict__)

    # -- steps 1 and 2: spans, nearest items --------------------------------------------
    def spans(self, text: str) -> list[tuple[int, int]]:
        """Candidate spans as character offsets: every paragraph (a block between blank
        lines, up to ``max_paragraph`` word pieces: a copied item usually keeps its own
        block) and sliding windows of word pieces at each of ``window_sizes``
        (size, stride), for items run into the surrounding text; a text shorter than a
        window is one span."""
        offs = self.embedder.full_tokenizer.encode(text, add_special_tokens=False).offsets
        if not offs:
            return []
        out = set()
        starts = np.array([a for a, _ in offs])
        for m in _PARAGRAPH.finditer(text):
            a, b = m.start(), m.end()
            n = np.searchsorted(starts, b) - np.searchsorted(starts, a)
            if 4 <= n <= self.max_paragraph:
                out.add((a, b))
        for size, stride in self.window_sizes:
            if len(offs) <= size:
                out.add((offs[0][0], offs[-1][1]))
                continue
            for a in range(0, len(offs) - size + stride, stride):
                b = min(len(offs), a + size)
                out.add((offs[a][0], offs[b - 1][1]))
        return sorted(out)

    def candidates(self, texts: list[str], token_floor: float | None = None) -> list[Candidate]:
        """Per document, the ``max_candidates`` items nearest to any of its spans
        (cosine >= ``min_similarity``), each with its best span and the features
        (``token_floor``: see ``verification_features``)."""
        spans, owner = [], []
        for d, text in enumerate(texts):
            for sp in self.spans(text):
                spans.append(sp)
                owner.append(d)
        if not spans:
            return []
        vecs = self.embedder.embed([texts[d][a:b] for d, (a, b) in zip(owner, spans)])
        best: dict[tuple[int, int], tuple[float, int]] = {}
        k = min(16, len(self.view_owner))
        for s in range(0, len(vecs), 512):  # exact nearest views: one matrix product per block
            sims = vecs[s : s + 512] @ self.view_vectors.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            for r in range(len(top)):
                row = s + r
                for v in top[r]:
                    sim = float(sims[r, v])
                    if sim < self.min_similarity:
                        continue
                    key = (owner[row], int(self.view_owner[v]))
                    if key not in best or sim > best[key][0]:
                        best[key] = (sim, row)
        per_doc: dict[int, list] = {}
        for (d, item), (sim, row) in best.items():
            per_doc.setdefault(d, []).append((sim, item, row))
        out = []
        for d in sorted(per_doc):
            for sim, item, row in sorted(per_doc[d], key=lambda x: (-x[0], x[1]))[: self.max_candidates]:
                out.append(Candidate(d, item, spans[row], similarity=sim))
        return self.verification_features(out, texts, token_floor)

    def verification_features(
        self, cands: list[Candidate], texts: list[str], token_floor: float | None = None
    ) -> list[Candidate]:
        """Fill each candidate's features but the cosine (computed by ``candidates``, or
        read back from a run that embedded elsewhere).  The margin needs every candidate
        of a document, so this takes them all at once.  The token alignment is computed
        for candidates with a cosine of at least ``token_floor``; by default, for those at
        or above their format's floor whose model weighs it.  Elsewhere the three stay 0."""
        top2: dict[int, list[tuple[float, int]]] = {}
        for c in cands:
            top2[c.doc] = sorted(top2.get(c.doc, []) + [(c.similarity, c.item)], reverse=True)[:2]
        for c in cands:
            other = [sim for sim, item in top2[c.doc] if item != c.item]
            c.margin = c.similarity - max(other + [self.min_similarity])
            text = texts[c.doc]
            a, b = c.span
            span = text[a:b]
            seen = sorted({self.vocab[k] for k, _, _ in content_tokens(span) if k in self.vocab})
            v0, v1 = self._first_view[c.item], self._first_view[c.item + 1]
            if seen:
                hit = np.asarray(self._view_rows[v0:v1][:, seen].sum(axis=1)).ravel()
                c.coverage = float((hit / self.view_mass[v0:v1]).max())
            else:
                c.coverage = 0.0
            nums = self.item_numbers[c.item]
            if nums:
                c.has_numbers = 1.0
                c.number_recall = len(nums & numbers_of(span)) / len(nums)
            want, shapes = self.item_signature[c.item], self.item_examples[c.item]
            if want or shapes:
                before, after = SIGNATURE_CONTEXT
                context = text[max(0, a - before) : b + after]
            if want:
                c.signature = weighted_overlap(want, signature_types(context), lambda k: 1)
            if shapes:
                c.examples = weighted_overlap(
                    shapes, example_shapes(context), lambda k: self.shape_idf.get(k, self.unseen_shape_idf)
                )
        for c in cands:
            floor = token_floor
            if floor is None:  # the stage: only where the format's model weighs the alignment
                fmt, v = self.items[c.item].fmt, self.verifier
                floor = v.model(fmt).get("min_similarity", 0.0) if v.uses(fmt, "token_") else math.inf
            if c.similarity < floor:
                continue
            a, b = c.span
            (_, span_vecs), *views = self.embedder.embed_tokens([texts[c.doc][a:b]] + self.items[c.item].views)
            c.token_recall, c.token_recall_idf, c.token_precision = self.token_alignment(span_vecs, views)
        return cands

    def best_aligned_view(self, span_vecs: np.ndarray, views) -> tuple[np.ndarray, np.ndarray] | None:
        """(cosines of the view's word pieces x the span's, the view pieces' idf) for the item
        view of the highest idf-weighted recall (each view piece's best cosine to the span);
        None when either side is empty or no view recalls anything."""
        best, best_recall = None, 0.0
        if not len(span_vecs):
            return None
        for ids, vecs in views:
            if not len(ids):
                continue
            sims = vecs @ span_vecs.T
            w = self.piece_idf[ids]
            recall = float(sims.max(axis=1) @ w / w.sum())
            if recall > best_recall:
                best, best_recall = (sims, w), recall
        return best

    def token_alignment(self, span_vecs: np.ndarray, views) -> tuple[float, float, float]:
        """(recall, idf-weighted recall, precision) of the greedy word-piece alignment of a
        span with the item view of the highest weighted recall; zeros when either is empty."""
        best = self.best_aligned_view(span_vecs, views)
        if best is None:
            return 0.0, 0.0, 0.0
        sims, w = best
        recall = sims.max(axis=1)
        return float(recall.mean()), float(recall @ w / w.sum()), float(sims.max(axis=0).mean())

    # -- steps 2 and 3 -----------------------------------------------------------------
    def match_batch(self, texts) -> list[ParaphraseHit | None]:
        """Per document: None, or the best verified hit."""
        texts = list(texts)
        cands = self.candidates(texts)
        best: list[ParaphraseHit | None] = [None] * len(texts)
        v = self.verifier
        for c in cands:
            it = self.items[c.item]
            score = v.score(it.fmt, c.features())
            if not v.accept(it.fmt, score, c.similarity):
                continue
            cur = best[c.doc]
            if cur is None or score > cur.score:
                best[c.doc] = ParaphraseHit(it.benchmark, it.item_id, round(c.similarity, 4), round(score, 4), c.span)
        return best
