"""datatrove's four rule-based filters on one Parquet file, for benchmarks/heuristics_eval.py
(run with the Python of a venv that has ``.[bench]``: datatrove's fastText binding
would replace the predict-only one curate uses).

For each document and each filter (GopherQualityFilter, GopherRepetitionFilter,
C4QualityFilter, FineWebQualityFilter, all at their defaults but ``language``)
records keep/drop, datatrove's reason and, for C4, the edited text of a kept
document; times each filter alone over all documents on one core (the filter's
``filter`` call per document: what a LocalPipelineExecutor runs per document,
without reading or writing).  Each document's language is the ``--lang-column``
value (ISO 639-1; empty or null: ``en``), so the word tokenizer is the one
datatrove assigns that language (spaCy ``en``, jieba for ``zh``, SudachiPy for
``ja``, ...).  Tokenizers are loaded and warmed on one document before timing.

Writes one JSON object to ``OUT``.

usage: python benchmarks/datatrove_heuristics_side.py PARQUET OUT [--lang-column lang]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("parquet")
    parser.add_argument("out")
    parser.add_argument("--lang-column", default="")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()

    import pyarrow.parquet as pq
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    table = pq.read_table(args.parquet)
    if args.limit:
        table = table.slice(0, args.limit)
    ids = [str(i) for i in table.column("id").to_pylist()]
    texts = [t or "" for t in table.column("text").to_pylist()]
    langs = (
        table.column(args.lang_column).to_pylist()
        if args.lang_column and args.lang_column in table.column_names
        else [None] * len(texts)
    )
    langs = [lang or "en" for lang in langs]
    families = {
        "gopher_quality": GopherQualityFilter,
        "gopher_repetition": GopherRepetitionFilter,
        "c4": C4QualityFilter,
        "fineweb": FineWebQualityFilter,
    }
    out = {"documents": len(texts), "chars": sum(map(len, texts)), "ids": ids, "langs": langs, "families": {}}
    for family, cls in families.items():
        filters = {lang: cls(language=lang) for lang in sorted(set(langs))}
        for lang, flt in filters.items():  # load and warm each tokenizer outside the timing
            flt.filter(Document(text="Warm up the tokenizer. It loads on first use.", id="warm"))
        keep, reasons, edited = [], [], {}
        start = time.process_time()
        for doc_id, text, lang in zip(ids, texts, langs):
            doc = Document(text=text, id=doc_id)
            result = filters[lang].filter(doc)
            ok = result if isinstance(result, bool) else result[0]
            keep.append(bool(ok))
            reasons.append(None if ok else (result[1] if isinstance(result, tuple) else ""))
            if ok and family == "c4":
                edited[doc_id] = doc.text
        seconds = time.process_time() - start
        out["families"][family] = {
            "cpu_seconds": round(seconds, 3),
            "docs_per_s": round(len(texts) / seconds, 1),
            "keep": keep,
            "reasons": reasons,
            **({"edited": edited} if family == "c4" else {}),
        }
    with open(args.out, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
