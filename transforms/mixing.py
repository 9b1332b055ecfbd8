"""Stage ``mixing``: sample sources to target token shares within a token budget.

Element shapes: batches -> (mixture source, tokens) sums -> one plan dict
(``classifiers.mixture.plan_mixture``), broadcast as a singleton side input ->
batches with ``mixture_source`` and ``epoch`` (a document repeated k times
appears k times, epochs 0..k-1).

A document's mixture source is its ``source_column`` value mapped through
``source_map`` (unmapped values stand for themselves); a source without a
weight goes to ``other`` when the mixture has ``other``, else it is rejected
with ``source_not_in_mixture:<source>``.  Documents sampled out are rejected
with ``sampled_out:<source>``.  In the funnel, ``kept`` counts distinct
documents (epoch 0); repeats are counted apart.
"""

from __future__ import annotations

from fractions import Fraction

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from pydantic import Field, model_validator

from curate.classifiers.mixture import epochs_for, plan_mixture, tokens_from_chars
from curate.transforms import render
from curate.transforms.io import write_json
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, StatKind, register
from curate.transforms.stage import REJECTED_TAG, Stage, StageResult, TaggedParDo, reject_batch, with_columns

MIX_SOURCE = pa.field("mixture_source", pa.string())
EPOCH = pa.field("epoch", pa.int32())


def mixture_sources(batch: pa.RecordBatch, source_col: str, source_map: dict, weights: dict) -> list[str | None]:
    raw = batch.column(source_col).to_pylist() if source_col in batch.schema.names else [None] * batch.num_rows
    out = []
    for value in raw:
        mapped = source_map.get(value, value) if value is not None else None
        if mapped not in weights:
            mapped = "other" if "other" in weights else None
        out.append(mapped)
    return out


class Sample(beam.DoFn):
    def __init__(self, stage: str, cfg: "MixingConfig", text_col: str, id_col: str, tokens_per_char: float):
        self.stage, self.cfg, self.text_col, self.id_col, self.tpc = stage, cfg, text_col, id_col, tokens_per_char

    def process(self, batch: pa.RecordBatch, plan: dict):
        c = self.cfg
        sources = mixture_sources(batch, c.source_column, c.source_map, c.weights)
        ids = batch.column(self.id_col).to_pylist()
        epochs = np.zeros(batch.num_rows, dtype=np.int64)
        src_arr = np.array([s if s is not None else "" for s in sources], dtype=object)
        for source in set(sources) - {None}:
            idx = np.flatnonzero(src_arr == source)
            rate = Fraction(plan["sources"][source]["sampling_rate_exact"])
            epochs[idx] = epochs_for([ids[i] for i in idx], rate, c.seed)
        annotated = with_columns(batch, {MIX_SOURCE.name: pa.array(sources, pa.string())})
        dropped = np.flatnonzero(epochs == 0)
        if len(dropped):
            reasons = [
                f"sampled_out:{sources[i]}"
                if sources[i] is not None
                else f"source_not_in_mixture:{batch.column(c.source_column)[i].as_py() if c.source_column in batch.schema.names else None}"
                for i in dropped
            ]
            rej = annotated.take(pa.array(dropped))
            rej = with_columns(rej, {EPOCH.name: pa.array(np.zeros(len(dropped), dtype=np.int32))})
            yield beam.pvalue.TaggedOutput(REJECTED_TAG, reject_batch(rej, self.stage, reasons))
        kept_rows = np.repeat(np.arange(batch.num_rows), epochs)
        if len(kept_rows):
            epoch_of = np.concatenate([np.arange(k) for k in epochs if k > 0]).astype(np.int32)
            yield with_columns(annotated.take(pa.array(kept_rows)), {EPOCH.name: pa.array(epoch_of)})


class Mix(Stage):
    name = "mixing"
    added_fields = (MIX_SOURCE, EPOCH)
    repeat_column = EPOCH.name

    def __init__(self, columns, cfg: "MixingConfig", tokens_per_char: float, plan_path: str):
        super().__init__(columns)
        self.cfg, self.tpc, self.plan_path = cfg, tokens_per_char, plan_path
        self.kept_partition_column = MIX_SOURCE.name if cfg.folder_per_source else None

    def expand(self, batches) -> StageResult:
        c, tpc, text_col = self.cfg, self.tpc, self.columns.text

        def chars_by_source(batch: pa.RecordBatch):
            sources = np.array(
                [s or "" for s in mixture_sources(batch, c.source_column, c.source_map, c.weights)], dtype=object
            )
            chars = pc.fill_null(pc.utf8_length(batch.column(text_col)), 0).to_numpy(zero_copy_only=False)
            for source in set(sources) - {""}:
                yield source, int(chars[sources == source].sum())  # integers: the sum is the same in any order

        plan_path = self.plan_path

        def make_plan(available_chars: dict) -> dict:
            plan = plan_mixture(tokens_from_chars(available_chars, tpc), c.weights, c.token_budget, c.max_epochs)
            write_json(plan_path, plan)
            return plan

        plan = (
            batches
            | "CharsBySource" >> beam.FlatMap(chars_by_source)
            | "SumChars" >> beam.CombinePerKey(sum)
            | "Available" >> beam.combiners.ToDict()
            | "Plan" >> beam.Map(make_plan)
        )
        out = batches | "Sample" >> TaggedParDo(
            Sample(self.name, c, text_col, self.columns.id, tpc),
            [REJECTED_TAG],
            main="kept",
            plan=beam.pvalue.AsSingleton(plan),
        )
        name = self.name

        def mixed(batch: pa.RecordBatch):
            sources = np.array(batch.column(MIX_SOURCE.name).to_pylist(), dtype=object)
            chars = pc.fill_null(pc.utf8_length(batch.column(text_col)), 0).to_numpy(zero_copy_only=False)
            for source in set(sources):
                mask = sources == source
                yield MIXED.key(name, source), (int(mask.sum()), int(chars[mask].sum()))

        stats = out.kept | "MixedBySource" >> beam.FlatMap(mixed)
        return StageResult(out.kept, out[REJECTED_TAG], extra_stats=stats)


PHI3_MIX = {"synthetic_textbook": 0.35, "synthetic_exercises": 0.15, "filtered_web": 0.30, "code": 0.15, "other": 0.05}
PLAN_FILE = "_mixture_plan.json"  # written into staging by the pipeline, read by ``publish_mixture``


class MixingConfig(StageConfig):
    source_column: str = "source"
    # Raw source value -> mixture source (unmapped values stand for themselves;
    # sources without a weight go to `other` when the mixture has it).
    source_map: dict[str, str] = Field(default_factory=dict)
    # Target token shares (normalized to sum 1, with a warning); default the Phi-3 mix.
    weights: dict[str, float] = Field(default_factory=lambda: dict(PHI3_MIX), min_length=1)
    # Total tokens; null = the largest budget no source has to repeat for.
    token_budget: float | None = Field(None, gt=0)
    max_epochs: float = Field(4.0, ge=1)
    seed: int = 0
    folder_per_source: bool = False  # kept/<mixture_source>/part-*.parquet

    @model_validator(mode="after")
    def _weights(self):
        for name, weight in self.weights.items():
            if weight < 0:
                raise ValueError(f"@weights.{name}: must be >= 0")
        if sum(self.weights.values()) <= 0:
            raise ValueError("@weights: must not all be 0")
        return self


class MixedBySource(StatKind):
    """Documents and characters written per mixture source, repeats included."""

    kind = "mixed_by_source"
    markdown_order = 10
    html_order = 50

    def funnel(self, sums, entry, tokens_per_char):
        mixed = {
            group: render.size(d, c, tokens_per_char)
            for (kind, group), (d, c) in sorted(sums.items())
            if kind == self.kind
        }
        return {"mixed_by_source": mixed} if mixed else {}

    def markdown(self, entry, funnel):
        m = funnel.get("mixture")
        if not m:
            return []
        lines = [
            "",
            "## Mixture",
            "",
            f"Budget {m['budget_tokens']:,} tokens; planned {m['planned_tokens']:,}; achieved {m['achieved_tokens']:,} "
            f"(estimated). Max epochs {m['max_epochs']:g}.",
            "",
            "| source | available tokens | target share | achieved share | sampling rate | epochs | feasible |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for name, v in m["sources"].items():
            lines.append(
                f"| {name} | {v['available_tokens']:,} | {100 * v['target_share']:.1f}% | "
                f"{100 * v['achieved_share']:.1f}% | {v['sampling_rate']:.3f} | {v['epochs']} | "
                f"{'yes' if v['feasible'] else 'NO'} |"
            )
        if m["infeasible"]:
            lines += ["", f"Infeasible: {', '.join(m['infeasible'])}. Rule: {m['rule']}."]
        return lines

    def html(self, entry, funnel, samples):
        mixture = funnel.get("mixture")
        if not mixture:
            return []
        out = ["<h2>Mixture: achieved versus target</h2>"]
        rows = []
        for name, v in mixture["sources"].items():
            rows.append((f"{name} target", 100 * v["target_share"], f"{100 * v['target_share']:.1f}%"))
            rows.append(
                (
                    f"{name} achieved",
                    100 * v["achieved_share"],
                    f"{100 * v['achieved_share']:.1f}%" + ("" if v["feasible"] else " (infeasible)"),
                )
            )
        out.append(render.bars(rows, unit_max=100, color="#6b4fa0"))
        if mixture["infeasible"]:
            out.append(f"<p>Infeasible: {render.e(', '.join(mixture['infeasible']))}. {render.e(mixture['rule'])}.</p>")
        return out


MIXED = MixedBySource()


def mixture_report(plan: dict, entry: dict) -> dict:
    """The plan beside what was achieved: tokens written per source, incl. repeats."""
    mixed = entry.get("mixed_by_source", {})
    total = sum(v["tokens_est"] for v in mixed.values())
    sources = {}
    for name, p in plan["sources"].items():
        achieved = mixed.get(name, {}).get("tokens_est", 0)
        sources[name] = {
            **p,
            "achieved_tokens": achieved,
            "achieved_docs_with_repeats": mixed.get(name, {}).get("docs", 0),
            "achieved_share": round(achieved / total, 6) if total else 0.0,
        }
    return {**plan, "sources": sources, "achieved_tokens": total}


def publish_mixture(entry: dict, funnel: dict, read, write) -> None:
    """``funnel["mixture"]`` and ``mixture.json``: the plan beside what was achieved."""
    plan = read(PLAN_FILE)
    if plan is not None:
        funnel["mixture"] = mixture_report(plan, entry)
        write("mixture.json", funnel["mixture"])


def build_mixing(cfg: MixingConfig, ctx: BuildContext) -> list[Stage]:
    return [Mix(ctx.columns, cfg, ctx.tokens_per_char, FileSystems.join(ctx.staging, PLAN_FILE))]


register(
    StageSpec(
        key="mixing",
        config=MixingConfig,
        build=build_mixing,
        order=90,
        slots=(("mixing", "mixing"),),
        stats=(MIXED,),
        publish=publish_mixture,
    )
)
