"""Throughput per stage and for the whole chain, next to the bare kernels and datatrove.

For each corpus size (``--sizes``, default 10k and 100k; 1M with
``--sizes 1000000``) a scaled corpus of real documents (``benchmarks/corpus.py``)
is written as Parquet shards, then, all on one core:

- bare kernels, no Beam, on the first 20,000 documents: Parquet read, exact
  hash, MinHash signatures, fastText lid.176 ``predict`` on a list (k=1, the
  reference's bare figure) and our per-text LanguageIdentifier, quality
  features + scoring, 13-gram lookup against GSM8K + HumanEval + MMLU;
- Beam: ``curate run`` (DirectRunner, in-process, one worker) with each stage
  alone (plus input_check, which always runs) and with the whole chain, each
  a fresh process: wall time, docs/s, MB/s and peak RSS (GNU time);
- pipeline overhead: the chain's wall time after start-up divided by the time
  the bare kernels take, without Beam, on exactly the documents each stage
  received in that run (read back from its kept and rejected output), twice:
  with the issue's kernels (read, exact hash, MinHash signatures, language ID,
  quality score, n-gram lookup) and with all the work's (those plus
  near-dedup's candidate verification and Parquet writing, which any
  implementation also does); start-up of a 100-document run apart;
- datatrove (``--datatrove-python``, a venv with ``.[bench]``): read,
  read + LanguageFilter, read + MinhashDedupSignature on the same shards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import BENCHMARK_SETS, machine_facts, machine_line, require_shared, timed, write_results  # noqa: E402
from benchmarks.corpus import write_scaled_corpus  # noqa: E402

# the decontamination benchmarks of the chain and of the n-gram kernel: (format, file under BENCHMARK_SETS)
BENCHMARKS = (("gsm8k", "gsm8k_test.jsonl"), ("humaneval", "HumanEval.jsonl.gz"), ("mmlu", "mmlu_test"))
STAGES = ["exact_dedup", "near_dedup", "language", "quality", "decontamination", "mixing"]
SINGLE_CORE = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
KERNEL_DOCS = 20_000


def chain_config() -> dict:
    from importlib import resources

    cfg = yaml.safe_load(resources.files("curate.configs").joinpath("default.yaml").read_text())
    cfg["input"]["paths"] = []
    cfg["stages"]["decontamination"]["benchmarks"] = [
        {"name": fmt, "format": fmt, "path": str(BENCHMARK_SETS / path), "policy": "any"} for fmt, path in BENCHMARKS
    ]
    cfg["stages"]["mixing"].pop("source_map", None)
    return cfg


def stage_config(only: str | None) -> dict:
    cfg = chain_config()
    if only:
        for name in cfg["stages"]:
            cfg["stages"][name]["enabled"] = name == only
    return cfg


def run_curate(inputs: str, config: dict, work: Path, name: str) -> dict:
    cfg_path, out = work / f"{name}.yaml", work / f"out-{name}"
    cfg_path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    done = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "%M",
            sys.executable,
            "-m",
            "curate",
            "run",
            "--config",
            str(cfg_path),
            "--input",
            inputs,
            "--output",
            str(out),
            "--overwrite",
        ]
        + SINGLE_CORE,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    rss_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    funnel = json.loads((out / "funnel.json").read_text())
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(rss_mb), "funnel": funnel}


def _text_mb(shards: list[Path]) -> float:
    """MB of UTF-8 text in the shards (what MB/s figures divide)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    return sum(pc.sum(pc.binary_length(pq.read_table(p, columns=["text"]).column(0))).as_py() for p in shards) / 1e6


def _best(fn, runs: int = 2) -> float:
    return timed(fn, repeat=runs)[0]


def _benchmark_index():
    """The chain's 13-gram index of ``BENCHMARKS``, built as the decontamination stage builds it."""
    from curate.classifiers import benchmark_sets
    from curate.classifiers.ngram_index import NgramIndex

    items = [
        (fmt, i, t) for fmt, path in BENCHMARKS for i, t in benchmark_sets.load_items(fmt, str(BENCHMARK_SETS / path))
    ]
    return NgramIndex.build(items, n=13)


def bare_kernels(shards: list[Path]) -> dict:
    """Seconds per document of each kernel, without Beam."""
    import fasttext
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.classifiers import langid, minhash, quality, text

    read_s = _best(lambda: [pq.read_table(p) for p in shards])
    n_all = sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
    table = pa.concat_tables([pq.read_table(p) for p in shards]).slice(0, KERNEL_DOCS)
    texts = table.column("text").combine_chunks()
    py_texts = texts.to_pylist()
    n = len(py_texts)
    batches = [texts[i : i + 2048] for i in range(0, n, 2048)]
    py_batches = [py_texts[i : i + 2048] for i in range(0, n, 2048)]

    hasher = minhash.MinHasher()
    hasher.signatures(batches[0][:8])
    ft = fasttext.load_model(langid.default_model_path())
    flat = [t.replace("\n", " ") for t in py_texts]
    ident = langid.LanguageIdentifier()
    model = quality.load_model(quality.default_model_dir())
    index = _benchmark_index()
    per_doc = {
        "read": read_s / n_all,
        "exact_hash": _best(lambda: [text.exact_dedup_hashes(b) for b in batches]) / n,
        "minhash_signatures": _best(lambda: [hasher.signatures(b) for b in batches]) / n,
        # fasttext-predict 0.9.2.4's Python list wrapper breaks on its own return value; call
        # the C++ multilinePredict it wraps (labels only), the bare kernel the reference timed
        "fasttext_predict_list_k1": _best(lambda: ft.f.multilinePredict(flat, 1, 0.0, "replace")) / n,
        "language_identifier": _best(lambda: [ident.predict(b) for b in batches]) / n,
        "quality_score": _best(lambda: [model.score(b) for b in py_batches], runs=1) / n,
        "ngram_lookup": _best(lambda: [index.match_batch(b) for b in batches]) / n,
    }
    signatures = [hasher.signatures(b) for b in batches]
    per_doc["near_dedup_verify"] = (
        _best(lambda: [_verify_candidates(hasher, b, s) for b, s in zip(batches, signatures)]) / n
    )
    with tempfile.TemporaryDirectory() as tmp:
        per_doc["write"] = _best(lambda: pq.write_table(table, Path(tmp) / "w.parquet", compression="zstd")) / n
    mb = texts.nbytes / 1e6
    return {
        "documents": n,
        "mean_chars": round(float(np.mean([len(t) for t in py_texts]))),
        "text_mb": round(mb, 1),
        "docs_per_s": {k: round(1 / v, 1) for k, v in per_doc.items()},
        "seconds_per_doc": per_doc,
    }


def _verify_candidates(hasher, texts, signatures) -> int:
    """Near-dedup's work after the signatures, without Beam, as the stage does it: LSH
    buckets (14 bands x 8 rows), candidate pairs, the shingle sets of the documents
    in a pair made again from their text, exact Jaccard of each pair; returns the
    similar pairs.  The signatures are given: their time is ``minhash_signatures``."""
    import numpy as np
    import pyarrow as pa

    from curate.classifiers.minhash import band_keys, jaccard_sorted, lsh_bucket_pairs
    from curate.transforms.near_dedup import unique_per_document

    keys = band_keys(signatures, 14, 8)
    doc = np.repeat(np.arange(keys.shape[0]), keys.shape[1])
    order = np.lexsort((doc, keys.ravel()))
    sorted_keys = keys.ravel()[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
    bounds = np.append(starts, len(order))
    a, b = lsh_bucket_pairs(doc[order], bounds, 12, 8)
    pairs = np.unique((a.astype(np.uint64) << np.uint64(32)) | b.astype(np.uint64))
    in_pairs = np.unique(np.concatenate([a, b]))
    values, offsets = hasher.shingles(texts.take(pa.array(in_pairs)))
    sets, set_offsets = unique_per_document(values, np.asarray(offsets, dtype=np.int64))
    set_of = np.full(len(texts), -1, dtype=np.int64)
    set_of[in_pairs] = np.arange(len(in_pairs))
    similar = 0
    for x, y in zip(
        set_of[(pairs >> np.uint64(32)).astype(np.int64)].tolist(),
        set_of[(pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)].tolist(),
    ):
        similar += (
            jaccard_sorted(sets[set_offsets[x] : set_offsets[x + 1]], sets[set_offsets[y] : set_offsets[y + 1]]) >= 0.8
        )
    return similar


def stage_inputs(out: Path, funnel: dict) -> dict:
    """{stage name: Arrow array of the texts that stage received} in a finished chain
    run: a stage's input is what it and every later stage rejected (or routed), plus
    what the chain kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.transforms.stage import shell_safe

    def texts(directory: Path) -> list:
        return [pq.read_table(f, columns=["text"]).column(0) for f in sorted(directory.glob("**/*.parquet"))]

    ran = [s["name"] for s in funnel["stages"] if s.get("status") == "run"]
    received, later = {}, texts(out / "kept")
    for name in reversed(ran):
        later = (
            texts(out / "rejects" / shell_safe(name))
            + (texts(out / "by_language") if name == "language" else [])
            + later
        )
        received[name] = pa.chunked_array([c for chunk in later for c in chunk.chunks], pa.string()).combine_chunks()
    return received


def chain_kernel_seconds(out: Path, funnel: dict, shards: list[Path], runs: int = 2) -> dict:
    """Bare-kernel seconds for exactly the documents each stage of a chain run received
    (batches of 2,048, no Beam), fastest of ``runs``: what the chain's overhead is
    measured against.  Per-document rates from a mixed sample undercount it: the
    documents that pass language ID are 1.7x longer than the corpus mean (quality
    scoring of the 45k that reach it at 100k: 6.7 s, against 4.3 s at the sample's rate)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.classifiers import langid, minhash, quality, text

    received = stage_inputs(out, funnel)

    def batches(name):
        texts = received.get(name)
        return [] if texts is None else [texts[i : i + 2048] for i in range(0, len(texts), 2048)]

    hasher, ident = minhash.MinHasher(), langid.LanguageIdentifier()
    model = quality.load_model(quality.default_model_dir())
    index = _benchmark_index()
    near = batches("near_dedup")
    all_signatures = np.concatenate([hasher.signatures(b) for b in near])
    for warm in (
        lambda: hasher.signatures(near[0][:8]),
        lambda: ident.predict(near[0][:8]),
        lambda: model.score(near[0][:8]),
        lambda: index.match_batch(near[0][:8]),
    ):
        warm()  # numba kernels loaded from their cache, models touched: not the kernels' time
    written = pa.concat_tables([pq.read_table(f) for f in sorted(out.glob("**/*.parquet"))], promote_options="default")
    seconds = {
        "read": _best(lambda: [pq.read_table(p) for p in shards], runs),
        "exact_hash": _best(lambda: [text.exact_dedup_hashes(b) for b in batches("exact_dedup")], runs),
        "minhash_signatures": _best(lambda: [hasher.signatures(b) for b in near], runs),
        # LSH over all of the stage's documents at once, as the stage finds pairs across batches
        "near_dedup_verify": _best(lambda: _verify_candidates(hasher, received["near_dedup"], all_signatures), runs),
        "language_identifier": _best(lambda: [ident.predict(b) for b in batches("language")], runs),
        "quality_score": _best(lambda: [model.score(b) for b in batches("quality>=0.5")], runs),
        "ngram_lookup": _best(lambda: [index.match_batch(b) for b in batches("decontamination")], runs),
    }
    with tempfile.TemporaryDirectory() as tmp:
        seconds["write"] = _best(lambda: pq.write_table(written, Path(tmp) / "w.parquet", compression="zstd"), runs)
    issue = sum(seconds[k] for k in ISSUE_KERNEL_NAMES)
    return {
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "documents": {name: len(t) for name, t in received.items()},
        "issue_kernels_seconds": round(issue, 2),
        "all_kernels_seconds": round(sum(seconds.values()), 2),
    }


def fastest_kernels(kernel_runs: list) -> dict:
    """``chain_kernel_seconds`` of several timings -> each kernel's fastest, summed again."""
    seconds = {k: min(r["seconds"][k] for r in kernel_runs) for k in kernel_runs[0]["seconds"]}
    return {
        "seconds": seconds,
        "documents": kernel_runs[0]["documents"],
        "timings": len(kernel_runs),
        "issue_kernels_seconds": round(sum(seconds[k] for k in ISSUE_KERNEL_NAMES), 2),
        "all_kernels_seconds": round(sum(seconds.values()), 2),
    }


ISSUE_KERNEL_NAMES = (
    "read",
    "exact_hash",
    "minhash_signatures",
    "language_identifier",
    "quality_score",
    "ngram_lookup",
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--corpus-dir", default=str(Path(tempfile.gettempdir()) / "curate-bench-corpus"))
    parser.add_argument("--datatrove-python", help="python of a venv with datatrove (pip install '.[bench]')")
    parser.add_argument(
        "--datatrove-max-size", type=int, default=10**9, help="run datatrove only on corpora up to this size"
    )
    parser.add_argument(
        "--chain-runs", type=int, default=5, help="run the whole chain this many times, keep the fastest"
    )
    parser.add_argument(
        "--chain-kernels-max-size",
        type=int,
        default=100_000,
        help="time the bare kernels on the chain's own documents for corpora up to this size",
    )
    parser.add_argument(
        "--alone-max-size", type=int, default=10_000, help="run each stage alone for corpora up to this size (0: never)"
    )
    args = parser.parse_args()
    require_shared()
    from curate.classifiers import langid

    payload = {"machine": machine_facts(), "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = write_scaled_corpus(100, Path(args.corpus_dir) / "100", shards=1)
        # the first run of a fresh install compiles the numba kernels into their cache: not start-up
        run_curate(str(tiny[0]), chain_config(), work, "warm-up")
        startup = min(run_curate(str(tiny[0]), chain_config(), work, "startup")["seconds"] for _ in range(2))
        payload["startup_seconds"] = startup
        for size in [int(s) for s in args.sizes.split(",")]:
            shards = write_scaled_corpus(size, Path(args.corpus_dir) / str(size))
            inputs = str(shards[0].parent / "*.parquet")
            mb = sum(p.stat().st_size for p in shards) / 1e6
            text_mb = _text_mb(shards)
            entry = {"documents": size, "parquet_mb": round(mb, 1), "text_mb": round(text_mb, 1)}
            if "kernels" not in payload:  # per-document rates, measured once on the first corpus
                payload["kernels"] = bare_kernels(shards)
            # fastest of --chain-runs: this machine's speed drifts 20-50% between runs, also
            # within one benchmark run; so after each chain run the start-up run and the bare
            # kernels on its documents are timed again, and each figure is the fastest of its
            # own series: a slow phase cannot fall on one side of the overhead ratio only
            runs, startups, kernel_runs = [], [], []
            with_kernels = size <= args.chain_kernels_max_size
            for _ in range(args.chain_runs):
                runs.append(run_curate(inputs, stage_config(None), work, f"chain-{size}"))
                startups.append(run_curate(str(tiny[0]), chain_config(), work, "startup")["seconds"])
                if with_kernels:
                    kernel_runs.append(
                        chain_kernel_seconds(work / f"out-chain-{size}", runs[-1]["funnel"], shards, runs=1)
                    )
            startup = min(startups)
            payload["startup_seconds"] = min(payload["startup_seconds"], startup)
            chain = min(runs, key=lambda r: r["seconds"])
            chain["all_seconds"] = [r["seconds"] for r in runs]
            funnel = chain.pop("funnel")
            entry["chain"] = {
                **chain,
                "startup_seconds": startup,
                "startup_all_seconds": startups,
                "docs_per_s": round(size / chain["seconds"], 1),
                "text_mb_per_s": round(text_mb / chain["seconds"], 2),
                "docs_per_s_after_startup": round(size / max(chain["seconds"] - startup, 1e-9), 1),
                "stages": [
                    {"name": s["name"], "in": s["in"]["docs"], "kept": s["kept"]["docs"]}
                    for s in funnel["stages"]
                    if s.get("status") == "run"
                ],
            }
            if with_kernels:
                kernels = fastest_kernels(kernel_runs)
                entry["chain"]["kernels_on_its_documents"] = kernels
                entry["chain"]["bare_kernel_seconds"] = kernels["issue_kernels_seconds"]
                entry["chain"]["overhead_ratio"] = round(
                    (chain["seconds"] - startup) / kernels["issue_kernels_seconds"], 2
                )
                entry["chain"]["all_kernel_seconds"] = kernels["all_kernels_seconds"]
                entry["chain"]["overhead_ratio_all_kernels"] = round(
                    (chain["seconds"] - startup) / kernels["all_kernels_seconds"], 2
                )
            if size <= args.alone_max_size:
                entry["alone"] = {}
                for stage in STAGES:
                    r = run_curate(inputs, stage_config(stage), work, f"{stage}-{size}")
                    r.pop("funnel")
                    entry["alone"][stage] = {
                        **r,
                        "docs_per_s": round(size / r["seconds"], 1),
                        "text_mb_per_s": round(text_mb / r["seconds"], 2),
                    }
            if args.datatrove_python and size <= args.datatrove_max_size:
                done = subprocess.run(
                    [
                        args.datatrove_python,
                        str(Path(__file__).with_name("datatrove_side.py")),
                        str(shards[0].parent),
                        langid.default_model_path(),
                    ],
                    capture_output=True,
                    text=True,
                )
                entry["datatrove"] = (
                    json.loads(done.stdout.strip().splitlines()[-1])
                    if done.returncode == 0
                    else {"error": done.stderr[-1500:]}
                )
            payload["sizes"][str(size)] = entry
            print(json.dumps(entry, indent=1)[:3000], flush=True)
    write_results("throughput", payload, render(payload))
    return 0


def render(payload: dict) -> str:
    m = payload["machine"]
    lines = [
        "# Throughput, one core",
        "",
        f"{machine_line(m)}. Start-up of a 100-document run (imports, models, graph): {payload['startup_seconds']} s.",
        "",
    ]
    k = payload["kernels"]
    lines += [
        f"Bare kernels, no Beam ({k['documents']:,} documents, mean {k['mean_chars']:,} characters):",
        "",
        "| kernel | docs/s |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in k["docs_per_s"].items()]
    lines.append("")
    for size, e in payload["sizes"].items():
        c = e["chain"]
        lines += [
            f"## {int(size):,} documents ({e['parquet_mb']} MB Parquet, {e.get('text_mb', '?')} MB of text)",
            "",
            f"Whole chain (DirectRunner, one worker): {c['seconds']} s = {c['docs_per_s']:,.0f} docs/s, "
            f"{c.get('text_mb_per_s', '?')} MB/s of text, fastest of {len(c.get('all_seconds', [1]))} runs "
            f"({', '.join(str(x) for x in c.get('all_seconds', [c['seconds']]))} s) "
            f"({c['docs_per_s_after_startup']:,.0f} after {c.get('startup_seconds', payload['startup_seconds'])} s "
            f"start-up, the fastest of {len(c.get('startup_all_seconds', [])) or 'the'} start-up runs, one after "
            f"each chain run); peak RSS {c['peak_rss_mb']:,} MB"
            + (
                f"; pipeline overhead (chain after start-up / bare kernels on the documents each stage "
                f"received) {c['overhead_ratio']}x the "
                f"issue's kernels ({c['bare_kernel_seconds']} s: read, exact hash, MinHash signatures, "
                f"language ID, quality score, n-gram lookup)"
                if "overhead_ratio" in c
                else ""
            )
            + (
                f", {c['overhead_ratio_all_kernels']}x all the work's kernels ({c['all_kernel_seconds']} s: "
                f"those plus near-dedup's candidate verification and writing Parquet)"
                if "overhead_ratio_all_kernels" in c
                else ""
            )
            + ".",
            "",
        ]
        if "kernels_on_its_documents" in c:
            kd = c["kernels_on_its_documents"]
            lines += [
                "Bare kernels on the documents each stage of this chain received (no Beam, each kernel "
                f"the fastest of {kd.get('timings', 2)} timings, one after each chain run):",
                "",
                "| kernel | seconds |",
                "|---|---:|",
            ]
            lines += [f"| {name} | {sec} |" for name, sec in kd["seconds"].items()]
            lines += [
                "",
                "Documents received: " + ", ".join(f"{n} {d:,}" for n, d in kd["documents"].items()) + ".",
                "",
            ]
        if "alone" in e:
            lines += [
                "Each stage alone in Beam (plus input_check):",
                "",
                "| stage | seconds | docs/s | MB/s of text | peak RSS MB |",
                "|---|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {s} | {r['seconds']} | {r['docs_per_s']:,.0f} | {r.get('text_mb_per_s', '?')} | "
                f"{r['peak_rss_mb']:,} |"
                for s, r in e["alone"].items()
            ]
            lines.append("")
        if "datatrove" in e and "error" not in e["datatrove"]:
            d = e["datatrove"]
            lines += [
                "datatrove 0.10 (LocalPipelineExecutor, 1 task) on the same shards:",
                "",
                "| step | docs/s |",
                "|---|---:|",
            ]
            lines += [
                f"| {name} | {d[name]['docs_per_s']:,.0f} |"
                for name in ("read", "language_filter", "minhash_signature")
            ]
            lines.append("")
        elif "datatrove" in e:
            lines += [f"datatrove failed: {e['datatrove']['error'][-300:]}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
