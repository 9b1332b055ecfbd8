"""SemDeDup (Abbas et al. 2023): remove documents that say the same thing in other words.

MinHash sees shared word n-grams; two pages that differ by a paraphrase share few
and both survive near-dedup.  SemDeDup compares meaning instead:

1. embed every document (``embedding.Embedder``; a long document is the mean of
   the vectors of its first ``max_chunks`` chunks of 256 word pieces, then
   L2-normalized, so a page's embedding is not just its first paragraph);
2. k-means on the normalized vectors (scikit-learn, spherical by
   normalization, fixed seed) -- clusters only bound the work: duplicates are
   searched for inside a cluster, never across;
3. inside each cluster the pairwise cosine matrix; a pair with cosine
   >= 1 - eps is a duplicate pair;
4. keep rule as near-dedup: duplicate pairs form connected components and each
   component keeps its smallest id; every other member is removed, with the kept
   id (``duplicate_of``), the cluster id and its cosine to the kept document.

Scaling to 1B documents (the Beam stage): k-means is fitted on a uniform sample
(e.g. 1-10M vectors; k ~ sqrt(sample) / a few, so clusters stay ~10-50k),
the centroids (k x 384 floats: 100k centroids = 150 MB) are broadcast as a side
input, every document is assigned to its nearest centroid in parallel
(``assign``), documents are grouped by cluster id (a shuffle of id + 384
float16 = ~0.8 KB per document), and ``dedup_cluster`` runs per cluster with
cost cluster_size^2 x 384 -- a cluster larger than ``max_cluster`` is split by a
second k-means on its own members first.  Removals then go through the same
component merge as near-dedup.  The clusters are a partition, so a duplicate
pair split across two clusters is missed; SemDeDup accepts that loss (the
pair's members are close to each other, so they rarely fall on different sides
of a boundary), and the evaluation measures recall with it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from curate.classifiers.embedding import Embedder, default_embedder

# cosine >= 0.98: the largest eps whose false merges among the real shared documents stay
# <= 0.25% on the dev split of benchmarks/semantic_eval.py (half the 0.5% limit); larger eps
# finds more paraphrase pairs but merges distinct short posts on one topic (see results)
DEFAULT_EPS = 0.02


@dataclasses.dataclass(frozen=True)
class Removal:
    doc_id: str
    duplicate_of: str  # the kept document of its component (smallest id)
    cluster: int
    similarity: float  # cosine to the kept document


def embed_documents(
    texts, embedder: Embedder | None = None, max_chunks: int = 4, chunk_tokens: int = 256
) -> np.ndarray:
    """One L2-normalized vector per document: mean of its first chunks' vectors."""
    emb = embedder or default_embedder()
    texts = list(texts)
    tok = emb.full_tokenizer
    pieces, owner = [], []
    for d, text in enumerate(texts):
        enc = tok.encode(text, add_special_tokens=False)
        offs = enc.offsets
        if len(offs) <= chunk_tokens - 2:
            pieces.append(text)
            owner.append(d)
            continue
        step = chunk_tokens - 2
        for c in range(min(max_chunks, (len(offs) + step - 1) // step)):
            a = offs[c * step][0]
            last = min(len(offs), (c + 1) * step) - 1
            pieces.append(text[a : offs[last][1]])
            owner.append(d)
    vecs = emb.embed(pieces) if pieces else np.zeros((0, 384), np.float32)
    out = np.zeros((len(texts), vecs.shape[1] if len(vecs) else 384), dtype=np.float32)
    np.add.at(out, np.array(owner, dtype=np.int64), vecs)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def fit_centroids(vectors: np.ndarray, n_clusters: int, seed: int = 0, sample: int = 1_000_000) -> np.ndarray:
    """k-means centroids (L2-normalized) fitted on at most ``sample`` vectors."""
    from sklearn.cluster import KMeans

    n = len(vectors)
    k = max(1, min(n_clusters, n))
    if n > sample:
        vectors = vectors[np.random.default_rng(seed).choice(n, sample, replace=False)]
    km = KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=100).fit(vectors)
    c = km.cluster_centers_.astype(np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def assign(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Nearest centroid by cosine (the per-document step of the distributed version)."""
    return np.argmax(vectors @ centroids.T, axis=1).astype(np.int64)


def dedup_cluster(ids: list[str], vectors: np.ndarray, eps: float, cluster: int = 0) -> list[Removal]:
    """Duplicates inside one cluster: components of cosine >= 1 - eps, smallest id kept."""
    n = len(ids)
    if n < 2:
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    order = sorted(range(n), key=lambda i: ids[i])
    ids = [ids[i] for i in order]
    v = vectors[order]
    sims = v @ v.T
    rows, cols = np.nonzero(np.triu(sims >= 1.0 - eps, k=1))
    if len(rows) == 0:
        return []
    _, labels = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False)
    first: dict[int, int] = {}
    for i in range(n):  # sorted by id: the first member of a component is its smallest id
        first.setdefault(int(labels[i]), i)
    out = []
    for i in range(n):
        k = first[int(labels[i])]
        if k != i:
            out.append(Removal(ids[i], ids[k], cluster, round(float(sims[i, k]), 4)))
    return out


def semdedup(
    ids: list[str],
    vectors: np.ndarray,
    eps: float = DEFAULT_EPS,
    n_clusters: int | None = None,
    seed: int = 0,
    max_cluster: int = 20_000,
) -> list[Removal]:
    """All removals of a collection that fits one machine (the reference the stage reproduces)."""
    n = len(ids)
    if n < 2:
        return []
    if len(set(ids)) != n:
        raise ValueError("document ids must be unique")
    k = n_clusters or max(1, int(round(np.sqrt(n) / 2)))
    centroids = fit_centroids(vectors, k, seed=seed)
    labels = assign(vectors, centroids)
    out: list[Removal] = []
    for c in np.unique(labels):
        members = np.nonzero(labels == c)[0]
        if len(members) > max_cluster:  # split an oversized cluster by its own k-means
            sub = assign(vectors[members], fit_centroids(vectors[members], -(-len(members) // max_cluster), seed))
            groups = [members[sub == s] for s in np.unique(sub)]
        else:
            groups = [members]
        for g in groups:
            out.extend(dedup_cluster([ids[i] for i in g], vectors[g], eps, int(c)))
    return sorted(out, key=lambda r: r.doc_id)
