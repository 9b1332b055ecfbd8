"""datatrove on the same shards, for benchmarks/throughput.py (run with a Python
that has datatrove installed: ``pip install '.[bench]'`` in its own venv, as
datatrove's fastText binding would replace fasttext-predict).

Prints one JSON object: docs/s per core of a Parquet read alone, read +
LanguageFilter (lid.176 pointed at the same local model file as curate), and
read + MinhashDedupSignature (its default word tokenizer and SHA-1 shingle
hash), each a LocalPipelineExecutor with one task and one worker.

usage: python benchmarks/datatrove_side.py SHARD_DIR LID_MODEL_PATH
"""

from __future__ import annotations

import json
import sys
import tempfile
import time


def main() -> int:
    shard_dir, model_path = sys.argv[1], sys.argv[2]
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.utils import lid

    lid.FT176LID.MODEL_URL = "file://" + model_path  # the local lid.176, no download
    import pyarrow.parquet as pq

    docs = pq.ParquetDataset(shard_dir).read(columns=["id"]).num_rows
    results = {"documents": docs}
    with tempfile.TemporaryDirectory() as work:
        steps = {
            "read": [],
            "language_filter": [LanguageFilter(languages=["en"], language_threshold=0.65)],
            "minhash_signature": [
                MinhashDedupSignature(
                    output_folder=f"{work}/sigs", config=MinhashConfig(num_buckets=14, hashes_per_bucket=8)
                )
            ],
        }
        for name, extra in steps.items():
            pipeline = [ParquetReader(shard_dir, text_key="text", id_key="id", glob_pattern="*.parquet")] + extra
            executor = LocalPipelineExecutor(
                pipeline=pipeline, tasks=1, workers=1, logging_dir=f"{work}/logs-{name}", skip_completed=False
            )
            start = time.perf_counter()
            executor.run()
            seconds = time.perf_counter() - start
            results[name] = {"seconds": round(seconds, 2), "docs_per_s": round(docs / seconds, 1)}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
