"""Stage ``exact_dedup``: one document per normalized-text hash.

Normalization (NFKC, lower-case, whitespace collapsed) and the 128-bit hash
live in ``classifiers.text``.  The document with the smallest id in each hash
group is kept; the others are rejected with reason ``exact_duplicate`` and
``duplicate_of`` = the kept id.

Element shapes, in order:
  batches          pa.RecordBatch
  hash blocks      (partition, (batch_key, HashBlock))   one per partition a batch has hashes in
  removals         (batch_key, pa.RecordBatch)            the duplicates (doc_id, duplicate_of) of one batch
                                                          found in one partition (``key_blocks.pack_removals``)
  keyed batches    (batch_key, pa.RecordBatch)            joined with their removals (``join: shuffle``)

The block shuffle and the removal join (``join``: side input or shuffle) are ``key_blocks``'s.
"""

from __future__ import annotations

from typing import Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
from pydantic import Field

from curate.classifiers.text import exact_dedup_hashes
from curate.transforms.key_blocks import (
    DUPLICATE_OF,
    MIN_PARTITIONS,
    RemoveListed,
    auto_partitions,
    batch_key,
    equal_key_runs,
    pack_removals,
    removal_join,
    split_by_partition,
)
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, register
from curate.transforms.stage import Stage, StageResult

__all__ = ["DUPLICATE_OF", "ExactDedup"]


class ExactDedup(Stage):
    name = "exact_dedup"
    reject_fields = (DUPLICATE_OF,)

    def __init__(self, columns, partitions: int = MIN_PARTITIONS, join: str = "side_input"):
        super().__init__(columns)
        self.partitions, self.join = partitions, join

    def expand(self, batches) -> StageResult:
        id_col, text_col, partitions = self.columns.id, self.columns.text, self.partitions

        def hash_blocks(batch: pa.RecordBatch):
            if batch.num_rows == 0:
                return
            # a null text (only if input_check let one through) hashes as 16 zero bytes
            digests = [d or bytes(16) for d in exact_dedup_hashes(batch.column(text_col))]
            keys = np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(-1, 2)
            key = batch_key(batch, id_col)
            for p, block in split_by_partition(keys, batch.column(id_col), partitions):
                yield p, (key, block)

        def removals(element):
            _, blocks = element
            return pack_removals(
                (bk, (doc_id, run[0][0]))  # kept: the smallest id of the run
                for run in equal_key_runs(blocks)
                for doc_id, bk, _ in run[1:]
            )

        removed = (
            batches
            | "HashBlocks" >> beam.FlatMap(hash_blocks)
            | "GroupByPartition" >> beam.GroupByKey()
            | "Duplicates" >> beam.FlatMap(removals)
        )
        return batches | "RemoveDuplicates" >> RemoveListed(self.name, "exact_duplicate", id_col, removed, self.join)


class ExactDedupConfig(StageConfig):
    # Partitions of the hash shuffle; null: one per 1M hashes of input (at least
    # 4, at most 4096), see transforms/key_blocks.py.
    partitions: int | None = Field(None, ge=1, le=65536)
    # How documents meet their removals: side_input | shuffle; null: side_input up
    # to 10M input documents, else shuffle (transforms/key_blocks.py).
    join: Literal["side_input", "shuffle"] | None = None


def build_exact_dedup(cfg: ExactDedupConfig, ctx: BuildContext) -> list[Stage]:
    return [
        ExactDedup(
            ctx.columns, cfg.partitions or auto_partitions(ctx.input_rows, 1), cfg.join or removal_join(ctx.input_rows)
        )
    ]


register(
    StageSpec(
        key="exact_dedup",
        config=ExactDedupConfig,
        build=build_exact_dedup,
        order=20,
    )
)
