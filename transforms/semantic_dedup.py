"""Stage ``semantic_dedup``: SemDeDup after MinHash (off by default).

Pages that say the same thing in other words share few word 5-grams, so both
survive near-dedup.  Each document is embedded (``classifiers/semdedup.py``:
mean of its first chunks' vectors, all-MiniLM-L6-v2 on onnxruntime), the
vectors are clustered by k-means and compared pairwise inside each cluster; a
pair with cosine >= 1 - ``eps`` is a duplicate, and as in near-dedup each
connected component keeps its smallest id.  Rejects: reason
``semantic_duplicate``, ``duplicate_of``.

Element shapes: batches -> (batch key, ids, float16 vectors) per batch -> one
list (the clustering is a global step) -> removals packed per batch key ->
``key_blocks.RemoveListed``, the join near-dedup uses.  Vectors are sorted by
id before k-means, so the clusters do not depend on the order a runner
delivered the batches.  This global step holds every vector on one worker
(384 float16 = 768 bytes a document): fine to tens of millions of documents;
past that, k-means on a sample with the centroids broadcast as a side input and
a shuffle by cluster id (``classifiers/semdedup.py`` describes it) is the
scalable form.

Needs the ``semantic`` extra (``pip install 'curate[semantic]'``), checked on the
driver; embedding costs about a dozen documents per second per CPU core
(``benchmarks/results/semantic.md``), so most runs want it on a GPU or after
the cheap stages (the config's ``order`` moves it).
"""

from __future__ import annotations

from typing import Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
from pydantic import Field

from curate.transforms.key_blocks import DUPLICATE_OF, RemoveListed, batch_key, pack_removals, removal_join
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, register
from curate.transforms.stage import Stage, StageResult


class SemanticDedupConfig(StageConfig):
    enabled: bool = False
    # cosine >= 1 - eps is a duplicate pair; 0.02 kept false merges among the real shared
    # documents under half the 0.5% limit on the dev split (benchmarks/semantic_eval.py)
    eps: float = Field(0.02, gt=0.0, lt=1.0)
    # k-means clusters; null: sqrt(documents) / 2 (clusters only bound the pairwise work)
    n_clusters: int | None = Field(None, ge=1)
    seed: int = 0
    # chunks of 256 word pieces averaged into a document's vector
    max_chunks: int = Field(4, ge=1)
    join: Literal["side_input", "shuffle"] | None = None


class EmbedBatch(beam.DoFn):
    def __init__(self, id_col: str, text_col: str, max_chunks: int):
        self.id_col, self.text_col, self.max_chunks = id_col, text_col, max_chunks

    def setup(self):
        from curate.classifiers.embedding import default_embedder

        self.embedder = default_embedder()

    def process(self, batch: pa.RecordBatch):
        from curate.classifiers.semdedup import embed_documents

        if batch.num_rows == 0:
            return
        texts = [t or "" for t in batch.column(self.text_col).to_pylist()]
        vectors = embed_documents(texts, self.embedder, max_chunks=self.max_chunks).astype(np.float16)
        yield batch_key(batch, self.id_col), batch.column(self.id_col).to_pylist(), vectors


def find_removals(embedded: list, cfg: SemanticDedupConfig) -> list:
    """Every batch's (key, ids, vectors) -> removals packed per batch key."""
    from curate.classifiers.semdedup import semdedup

    key_of, ids, vectors = {}, [], []
    for key, batch_ids, batch_vectors in embedded:
        for doc_id in batch_ids:
            key_of[doc_id] = key
        ids += batch_ids
        vectors.append(batch_vectors)
    if len(ids) < 2:
        return []
    order = np.argsort(np.array(ids, dtype=object))
    ids = [ids[i] for i in order]
    matrix = np.concatenate(vectors).astype(np.float32)[order]
    removals = semdedup(ids, matrix, eps=cfg.eps, n_clusters=cfg.n_clusters, seed=cfg.seed)
    return pack_removals((key_of[r.doc_id], (r.doc_id, r.duplicate_of)) for r in removals)


class SemanticDedup(Stage):
    name = "semantic_dedup"
    reject_fields = (DUPLICATE_OF,)

    def __init__(self, columns, cfg: SemanticDedupConfig, join: str = "side_input"):
        super().__init__(columns)
        self.cfg, self.join = cfg, join

    def check(self):
        from curate.classifiers.benchmark_sets import BenchmarkFormatError
        from curate.classifiers.embedding import available

        missing = available()
        if missing:
            raise BenchmarkFormatError(f"config key stages.semantic_dedup.enabled: {missing}")

    def expand(self, batches) -> StageResult:
        cfg = self.cfg
        removed = (
            batches
            | "Embed" >> beam.ParDo(EmbedBatch(self.columns.id, self.columns.text, cfg.max_chunks))
            | "AllVectors" >> beam.combiners.ToList()
            | "Cluster" >> beam.FlatMap(find_removals, cfg)
        )
        return batches | "RemoveSemanticDuplicates" >> RemoveListed(
            self.name, "semantic_duplicate", self.columns.id, removed, self.join
        )


def build_semantic_dedup(cfg: SemanticDedupConfig, ctx: BuildContext) -> list[Stage]:
    return [SemanticDedup(ctx.columns, cfg, cfg.join or removal_join(ctx.input_rows))]


# after MinHash near-dedup (30), before language ID (40)
register(
    StageSpec(
        key="semantic_dedup",
        config=SemanticDedupConfig,
        build=build_semantic_dedup,
        order=35,
    )
)
