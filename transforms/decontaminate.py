"""Stage ``decontamination``: drop documents that contain benchmark test items.

The n-gram index (``classifiers.ngram_index``) is built once inside the
pipeline from the benchmark files -- Create(specs) -> load items -> one
combine -> build -- and broadcast to every worker as a singleton side input
(a few MB for GSM8K + HumanEval + MMLU).  Batches of documents are normalized
and hashed with Arrow/numpy and looked up with one ``searchsorted``.

Policies, per benchmark:
  ``any``       drop on any indexed n-gram of one of its items;
  ``fraction``  drop when the matched n-grams cover at least ``min_fraction``
                of one item's indexed n-grams;
  ``cut``       as NeMo Curator: remove ``cut_window`` characters around each
                matched n-gram, keep the document made of the remaining pieces
                of at least ``min_piece_chars``; drop it past ``max_cuts`` cuts
                or when nothing long enough remains.  A cut document stays in
                ``kept/`` with ``contamination_cuts`` > 0, and the removed text
                (the windows and the pieces too short to keep) is written to
                ``cuts/decontamination/`` (id, benchmark, item, cut text), so
                nothing is lost; a dropped document is whole in the rejects
                (reason ``...:too_many_cuts`` or ``...:no_piece_left``).
Rejects carry ``contamination_benchmark``, ``contamination_item`` and
``matched_ngrams``; reason ``contaminated:<benchmark>``.  The contamination
report counts, per benchmark, documents dropped, documents cut and items found.
"""

from __future__ import annotations

from typing import Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curate.classifiers.benchmark_sets import FORMATS, BenchmarkFormatError, load_items
from curate.classifiers.ngram_index import NgramIndex, cut_matches
from curate.transforms import render
from curate.transforms.io import BEAM_FILES, expand_inputs
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, StatKind, StrList, register
from curate.transforms.stage import CUT, REJECTED_TAG, Stage, StageResult, TaggedParDo, emit_split

BENCHMARK = pa.field("contamination_benchmark", pa.string())
ITEM = pa.field("contamination_item", pa.string())
MATCHED = pa.field("matched_ngrams", pa.int32())
CUTS = pa.field("contamination_cuts", pa.int32())
CUT_SCHEMA = pa.schema(
    [("id", pa.string()), ("benchmark", pa.string()), ("item", pa.string()), ("cut_text", pa.string())]
)


def resolve_path(path: str) -> str:
    """``bundled:NAME`` is a file shipped in the curate package, resolved where it is read
    (on the worker), so no driver-local path ends up in the pipeline."""
    if path.startswith("bundled:"):
        from importlib import resources

        return str(resources.files("curate.sample").joinpath(path.split(":", 1)[1]))
    return path


def check_benchmark(stage: str, i: int, name: str, path: str, count_items) -> None:
    """Read one configured benchmark on the driver (``count_items()``: how many items it
    holds): a bad, missing, unreachable or empty file stops the run before any output, named
    by its config key."""
    key = f"config key stages.{stage}.benchmarks[{i}].path ({name})"
    try:
        if not count_items():
            raise BenchmarkFormatError(f"{path} holds no benchmark items (an empty file?)")
    except BenchmarkFormatError as exc:
        raise BenchmarkFormatError(f"{key}: {exc}") from None
    except (OSError, ValueError) as exc:  # a missing file, a folder, permissions; ValueError: no
        # filesystem for the path's scheme (gs:// without apache-beam[gcp])
        reason = getattr(exc, "strerror", None) or str(exc)
        raise BenchmarkFormatError(f"{key}: cannot read {path} ({reason})") from None


def load_spec_items(spec: dict):
    path = resolve_path(spec["path"])
    for item_id, text in load_items(spec["format"], path, spec.get("fields"), spec.get("id_field"), BEAM_FILES):
        yield spec["name"], item_id, text


def decide(matches: list[dict], index: NgramIndex, policies: dict):
    """Per document: (keep, reason, benchmark, item, matched) for the item with most matches.

    Items of ``cut`` benchmarks are left out here (see ``cut_candidates``)."""
    keep = np.ones(len(matches), dtype=bool)
    reasons, benches, items, counts = [], [None] * len(matches), [None] * len(matches), np.zeros(len(matches), np.int32)
    for d, found in enumerate(matches):
        best = None
        for item, count in found.items():
            if item < 0:
                continue
            bench = index.item_benchmarks[item]
            policy, min_fraction = policies[bench][:2]
            if policy == "cut" or (
                policy == "fraction" and count < min_fraction * max(int(index.item_ngrams[item]), 1)
            ):
                continue
            if best is None or count > best[1]:
                best = (item, count)
        if best is not None:
            item, count = best
            keep[d] = False
            benches[d], items[d], counts[d] = index.item_benchmarks[item], index.item_ids[item], count
            reasons.append(f"contaminated:{benches[d]}")
    return keep, reasons, benches, items, counts


class MatchBenchmarks(beam.DoFn):
    def __init__(self, stage: str, text_col: str, id_col: str, policies: dict):
        self.stage, self.text_col, self.id_col, self.policies = stage, text_col, id_col, policies

    def process(self, batch: pa.RecordBatch, index: NgramIndex):
        matches = index.match_batch(batch.column(self.text_col))
        keep, reasons, benches, items, counts = decide(matches, index, self.policies)
        cuts = np.zeros(batch.num_rows, dtype=np.int32)
        texts = None
        reasons = list(reasons)
        drop_order = list(np.flatnonzero(~keep))
        for d, found in enumerate(matches):
            if not keep[d] or not found:
                continue
            cut_items = [i for i in found if i >= 0 and self.policies[index.item_benchmarks[i]][0] == "cut"]
            if not cut_items:
                continue
            texts = texts if texts is not None else batch.column(self.text_col).to_pylist()
            item = max(cut_items, key=lambda i: found[i])
            bench = index.item_benchmarks[item]
            _, _, window, min_piece, max_cuts = self.policies[bench]
            new_text, removed, n_cuts = cut_matches(texts[d], found[-1], index.n, window, min_piece, max_cuts)
            benches[d], items[d], counts[d] = bench, index.item_ids[item], found[item]
            if new_text is None:  # the whole document goes to the rejects: its text is there, not in cuts/
                keep[d] = False
                drop_order.append(d)
                reasons.append(f"contaminated:{bench}:" + ("too_many_cuts" if n_cuts > max_cuts else "no_piece_left"))
                continue
            doc_id = batch.column(self.id_col)[d].as_py()
            for piece in removed:
                yield beam.pvalue.TaggedOutput(
                    "cuts", {"id": doc_id, "benchmark": bench, "item": index.item_ids[item], "cut_text": piece}
                )
            removed_chars = len(texts[d]) - len(new_text)
            yield beam.pvalue.TaggedOutput("cut_stats", ((self.stage, CUT, ""), (1, removed_chars)))
            # a cut document found an item as much as a dropped one: counted for the contamination report
            yield beam.pvalue.TaggedOutput("cut_stats", (CONTAMINATION.key(self.stage, f"{bench}\t{items[d]}"), (1, 0)))
            yield beam.pvalue.TaggedOutput(
                "cut_stats", (CONTAMINATION.key(self.stage, bench, kind=CUT_BY), (1, removed_chars))
            )
            texts[d], cuts[d] = new_text, n_cuts
        if texts is not None:  # some documents were cut: replace the text column
            col = batch.schema.get_field_index(self.text_col)
            batch = batch.set_column(col, self.text_col, pa.array(texts, pa.string()))
        # reasons must follow row order of the dropped rows
        order = np.argsort(np.array(drop_order, dtype=np.int64), kind="stable")
        reasons = [reasons[i] for i in order]
        extra = {
            BENCHMARK.name: pa.array(benches, pa.string()),
            ITEM.name: pa.array(items, pa.string()),
            MATCHED.name: pa.array(counts, pa.int32()),
        }
        yield from emit_split(
            batch, self.stage, keep, reasons, kept_extra={CUTS.name: pa.array(cuts, pa.int32())}, reject_extra=extra
        )


class Decontaminate(Stage):
    name = "decontamination"
    added_fields = (CUTS,)
    reject_fields = (BENCHMARK, ITEM, MATCHED)

    cut_schema = CUT_SCHEMA

    def __init__(self, columns, cfg: "DecontaminationConfig", reference_texts: list[str] | None = None):
        """``reference_texts``: the texts of ``cfg.reference_texts`` (read on the driver by the build)."""
        super().__init__(columns)
        # plain records: they are the elements of the pipeline's BenchmarkSpecs step
        self.specs = [b.model_dump() for b in cfg.benchmarks]
        self.ngram, self.max_item_frequency = cfg.ngram, cfg.max_item_frequency
        self.reference_texts = reference_texts or []

    def check(self):
        """Parse every benchmark file on the driver: a bad or missing file stops the run before any output,
        naming its config key."""
        for i, spec in enumerate(self.specs):
            check_benchmark(
                "decontamination",
                i,
                spec["name"],
                spec["path"],
                lambda spec=spec: sum(1 for _ in load_spec_items(spec)),
            )

    def expand(self, batches) -> StageResult:
        n, max_freq, refs = self.ngram, self.max_item_frequency, self.reference_texts

        def build(items):
            items = sorted(items)  # deterministic item order whatever the runner
            return NgramIndex.build(items, n=n, max_item_frequency=max_freq, reference_texts=refs or None)

        index = (
            batches.pipeline
            | "BenchmarkSpecs" >> beam.Create(self.specs)
            | "LoadItems" >> beam.FlatMap(load_spec_items)
            | "AllItems" >> beam.combiners.ToList()
            | "BuildIndex" >> beam.Map(build)
        )
        policies = {
            s["name"]: (s["policy"], s["min_fraction"], s["cut_window"], s["min_piece_chars"], s["max_cuts"])
            for s in self.specs
        }
        out = batches | "Match" >> TaggedParDo(
            MatchBenchmarks(self.name, self.columns.text, self.columns.id, policies),
            [REJECTED_TAG, "cuts", "cut_stats"],
            main="kept",
            index=beam.pvalue.AsSingleton(index),
        )

        name = self.name

        def index_stats(idx: NgramIndex):
            for key, value in idx.stats.items():
                yield CONTAMINATION.key(name, key, kind=INDEX), (int(value), 0)
            yield CONTAMINATION.key(name, "bytes", kind=INDEX), (idx.nbytes(), 0)

        def items_found(batch: pa.RecordBatch):
            for bench, item in zip(batch.column(BENCHMARK.name).to_pylist(), batch.column(ITEM.name).to_pylist()):
                yield CONTAMINATION.key(name, f"{bench}\t{item}"), (1, 0)

        stats = (
            (index | "IndexStats" >> beam.FlatMap(index_stats)),
            (out[REJECTED_TAG] | "ItemsFound" >> beam.FlatMap(items_found)),
            out.cut_stats,
        ) | "DecontamStats" >> beam.Flatten()
        self.cuts = out.cuts  # rows of CUT_SCHEMA, written by the pipeline to cuts/decontamination/
        return StageResult(out.kept, out[REJECTED_TAG], extra_stats=stats)


class BenchmarkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, pattern=r"^[^:\t]+$")  # reasons read contaminated:<name>[:<detail>]
    # gsm8k | humaneval | mmlu | arc | hellaswag | mbpp | generic (see classifiers/benchmark_sets.py)
    format: str = "generic"
    # File (or folder, for mmlu) on any FileSystems path; "bundled:sample_benchmark.jsonl"
    # names the small benchmark shipped with the sample corpus.
    path: str = Field(min_length=1)
    fields: StrList = Field(default_factory=list)  # generic: columns to join
    id_field: str | None = None
    policy: Literal["any", "fraction", "cut"] = "any"
    min_fraction: float = Field(0.5, gt=0.0, le=1.0)  # fraction: share of one item's n-grams that must match
    # cut (NeMo Curator's defaults): characters removed around a match, shortest
    # piece kept, most cuts before the document is dropped instead.
    cut_window: int = Field(200, ge=0)
    min_piece_chars: int = Field(200, ge=0)
    max_cuts: int = Field(10, ge=1)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(f"must be one of {', '.join(FORMATS)}")
        return value

    @model_validator(mode="after")
    def _generic_fields(self):
        if self.format == "generic" and not self.fields:
            raise ValueError("@fields: the generic format needs fields")
        return self


class DecontaminationConfig(StageConfig):
    # 13-grams as GPT-3's decontamination; 8 as Llama's.
    ngram: int = Field(13, ge=2, le=64)
    # An n-gram found in more than this many benchmark items is a template
    # ("which of the following is true ...") and is not indexed.
    max_item_frequency: int = Field(2, ge=1)
    # Optional Parquet/text of clean ordinary text whose n-grams are not indexed.
    reference_texts: StrList = Field(default_factory=list)
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=lambda: [
            BenchmarkSpec(name="sample_benchmark", format="gsm8k", path="bundled:sample_benchmark.jsonl")
        ]
    )

    @model_validator(mode="after")
    def _benchmarks(self):
        names = [b.name for b in self.benchmarks]
        if len(names) != len(set(names)):
            raise ValueError("@benchmarks: benchmark names must be unique")
        if self.enabled and not self.benchmarks:
            raise ValueError("@benchmarks: name at least one benchmark")
        return self


INDEX = "index"
CUT_BY = "cut_by_benchmark"  # documents cut (kept, with the matched text removed) and characters removed


class Contamination(StatKind):
    """Benchmark items found (``item_found``: benchmark TAB item) and the index's size (``index``)."""

    kind = "item_found"
    markdown_order = 50
    html_order = 40

    def funnel(self, sums, entry, tokens_per_char):
        index_stats = {group: d for (kind, group), (d, _) in sums.items() if kind == INDEX}
        if not index_stats:
            return {}
        found: dict[str, dict[str, int]] = {}
        cut = {group: (d, c) for (kind, group), (d, c) in sums.items() if kind == CUT_BY}
        for (kind, group), (d, _) in sorted(sums.items()):
            if kind == self.kind:
                bench, item = group.split("\t", 1)
                found.setdefault(bench, {})[item] = d
        dropped: dict[str, int] = {}  # contaminated:<benchmark>[:too_many_cuts|:no_piece_left]
        for reason, size in entry["rejected_by_reason"].items():
            if reason.startswith("contaminated:"):
                bench = reason.split(":")[1]
                dropped[bench] = dropped.get(bench, 0) + size["docs"]
        return {
            "contamination": {
                "index": dict(sorted(index_stats.items())),
                "benchmarks": {
                    b: {
                        "docs_dropped": dropped.get(b, 0),
                        "docs_cut": cut.get(b, (0, 0))[0],
                        "chars_cut": cut.get(b, (0, 0))[1],
                        "items_found": len(found.get(b, {})),
                        "items": found.get(b, {}),
                    }
                    for b in sorted(set(found) | set(dropped) | set(cut))
                },
            }
        }

    def markdown(self, entry, funnel):
        c = entry.get("contamination")
        if not c:
            return []
        idx = c["index"]
        lines = [
            "",
            f"## Contamination ({entry['name']})",
            "",
            f"Index: {idx.get('items', 0):,} benchmark items, {idx.get('ngrams', 0):,} n-grams "
            f"({render.fmt_bytes(idx.get('bytes', 0))}); excluded {idx.get('excluded_common_across_items', 0):,} "
            f"n-grams common across items, {idx.get('excluded_mostly_numbers', 0):,} mostly numbers and "
            f"{idx.get('excluded_in_reference_text', 0):,} found in reference text; "
            f"{idx.get('items_too_short', 0):,} items too short to index.",
            "",
            "| benchmark | documents dropped | documents cut (kept, matches removed: cuts/) | benchmark items found |",
            "|---|---:|---:|---:|",
        ]
        return lines + [
            f"| {bench} | {b['docs_dropped']:,} | {b.get('docs_cut', 0):,} | {b['items_found']:,} |"
            for bench, b in c["benchmarks"].items()
        ]

    def html(self, entry, funnel, samples):
        c = entry.get("contamination")
        if not c:
            return []
        out = [
            "<h2>Benchmark contamination</h2>",
            "<table><tr><th>benchmark</th><th>documents dropped</th><th>documents cut</th><th>items found</th></tr>",
        ]
        for bench, b in c["benchmarks"].items():
            out.append(
                f"<tr><td>{render.e(bench)}</td><td>{b['docs_dropped']:,}</td><td>{b.get('docs_cut', 0):,}</td>"
                f"<td>{b['items_found']:,}</td></tr>"
            )
        if not c["benchmarks"]:
            out.append("<tr><td colspan=4 class=muted>no benchmark item found</td></tr>")
        elif any(b.get("docs_cut") for b in c["benchmarks"].values()):
            out.append(
                "<tr><td colspan=4 class=muted>a cut document stays in kept/ with the matched text removed; "
                "the removed text is in cuts/decontamination/</td></tr>"
            )
        idx = c["index"]
        out.append(
            f"</table><p class=muted>Index: {idx.get('items', 0):,} items, {idx.get('ngrams', 0):,} n-grams.</p>"
        )
        return out


CONTAMINATION = Contamination()


def reference_texts(paths: list[str], columns) -> list[str]:
    texts: list[str] = []
    for path in paths:
        for shard in expand_inputs([path]):
            texts += [t for t in pq.read_table(shard, columns=[columns.text]).column(0).to_pylist() if t]
    return texts


def build_decontamination(cfg: DecontaminationConfig, ctx: BuildContext) -> list[Stage]:
    return [Decontaminate(ctx.columns, cfg, reference_texts(cfg.reference_texts, ctx.columns))]


def publish_contamination(entry: dict, funnel: dict, read, write) -> None:
    """``contamination.json``: the stage's findings on their own, for tools that read only them."""
    if entry.get("contamination") is not None:
        write("contamination.json", entry["contamination"])


register(
    StageSpec(
        key="decontamination",
        config=DecontaminationConfig,
        build=build_decontamination,
        order=70,
        stats=(CONTAMINATION,),
        publish=publish_contamination,
    )
)
