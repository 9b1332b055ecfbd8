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

import difflib
import math
from fractions import Fraction

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from pydantic import Field, model_validator

from curate.classifiers.mixture import epochs_for, plan_mixture, tokens_from_chars, weights_sum_to_one
from curate.classifiers.text import estimate_tokens
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
        # A map target with no weight counts as `other` (a mixture copied from
        # configs/mixtures.yaml may leave some out), but one a letter or two from a
        # weight is a misspelling on one side: refused, not silently mixed as `other`.
        for raw, target in self.source_map.items():
            close = (
                None if target in self.weights else difflib.get_close_matches(target, self.weights, n=1, cutoff=0.85)
            )
            if close:
                raise ValueError(
                    f"@source_map.{raw}: maps to {target!r}, which has no weight, but weights.{close[0]} does: "
                    "a misspelling in weights or in source_map? (a source without a weight would count as "
                    "'other')"
                )
        return self


class MixedBySource(StatKind):
    """Documents and characters written per mixture source, repeats included."""

    kind = "mixed_by_source"
    markdown_order = 10
    html_order = 50

    def funnel(self, sums, entry, tokens_per_char):
        mixed = self.sizes(sums, tokens_per_char)
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
            "| source | available tokens | target | planned tokens | achieved | passes over the data (exact) | feasible |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
        for name, v in m["sources"].items():
            lines.append(
                f"| {name} | {v['available_tokens']:,} | {100 * v['target_share']:.1f}% = {v['target_tokens']:,} | "
                f"{v['planned_tokens']:,} | {v['achieved_tokens']:,} ({100 * v['achieved_share']:.1f}%) | "
                f"{passes_text(v)} | {'yes' if v['feasible'] else 'NO'} |"
            )
        lines.append("")
        lines += [f"- {line}" for line in explanations(m)]
        if m["infeasible"]:
            lines += ["", f"Infeasible: {', '.join(m['infeasible'])}. Rule: {m['rule']}."]
        return lines

    def html(self, entry, funnel, samples):
        mixture = funnel.get("mixture")
        if not mixture:
            return []
        e = render.e
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
        out.append(
            f"<p>Budget {mixture['budget_tokens']:,} tokens; planned {mixture['planned_tokens']:,}; achieved "
            f"{mixture['achieved_tokens']:,} (estimated). Max epochs {mixture['max_epochs']:g}.</p>"
        )
        out.append(
            "<table class=mixture><tr><th>source</th><th>available tokens</th><th>target</th><th>planned tokens</th>"
            "<th>achieved tokens</th><th style='text-align:left'>passes over the data (exact)</th><th>feasible</th>"
            "<th style='text-align:left'>why</th></tr>"
        )
        for name, v in mixture["sources"].items():
            feasible = "<span class=ok>yes</span>" if v["feasible"] else "<span class=bad>no</span>"
            out.append(
                f"<tr><td>{e(name)}</td><td>{v['available_tokens']:,}</td>"
                f"<td>{100 * v['target_share']:.1f}% = {v['target_tokens']:,}</td><td>{v['planned_tokens']:,}</td>"
                f"<td>{v['achieved_tokens']:,} ({100 * v['achieved_share']:.1f}%)</td><td style='text-align:left'>{e(passes_text(v))}</td>"
                f"<td>{feasible}</td><td style='text-align:left'>{e(why_text(v, mixture))}</td></tr>"
            )
        out.append("</table>")
        if mixture["infeasible"]:
            out.append(f"<p>Infeasible: {e(', '.join(mixture['infeasible']))}. {e(mixture['rule'])}.</p>")
        return out


def passes_text(v: dict, exact: bool = False) -> str:
    """The sampling rate of a mixture row as passes over its available documents:
    ``1.4: every document once, 40.0% of them once more (up to 2 copies)``.  A rate with no
    short decimal shows as ``≈ 0.546518``, or with ``exact`` as its fraction from the plan too
    when that is short (``1/3 ≈ 0.333333``; a plan's rate is often a ratio of two 20-digit
    token counts, which only ``funnel.json``'s ``sampling_rate_exact`` needs to carry)."""
    rate = Fraction(v["sampling_rate_exact"])
    whole, frac = divmod(rate, 1)
    decimal = f"{float(rate):.6f}".rstrip("0").rstrip(".")
    if Fraction(decimal) == rate:
        number = decimal
    else:
        short = exact and rate.denominator <= 10_000
        number = f"{rate.numerator}/{rate.denominator} ≈ {decimal}" if short else f"≈ {decimal}"
    times = "once" if whole == 1 else f"{whole} times"
    if rate == 0:
        return "0: none taken"
    if frac == 0:
        return f"{number}: every document {times}"
    share = f"{100 * float(frac):.1f}%"
    if whole == 0:
        return f"{number}: a sample of {share}, each document at most once"
    return f"{number}: every document {times}, {share} of them once more (up to {v['epochs']} copies)"


def why_text(v: dict, plan: dict) -> str:
    """Why a mixture row's planned tokens differ from its target, and what was done instead."""
    if not v["feasible"]:
        unfilled = v["target_tokens"] - v["planned_tokens"]
        instead = (
            f"its unfilled {unfilled:,} target tokens went to the other sources by weight"
            if unfilled > 0
            else "it was capped and the rest of its share redistributed over the other sources by weight"
        )
        return f"infeasible: {v['why_infeasible']}; planned {v['planned_tokens']:,} tokens instead, and {instead}"
    extra = v["planned_tokens"] - v["target_tokens"]
    if plan["infeasible"] and extra > 0:
        return f"feasible; takes {extra:,} tokens more than its target, redistributed from infeasible sources"
    # planned, not achieved: documents are sampled whole and at random, so what is written
    # differs from the plan (the achieved column says by how much)
    return "feasible: planned at its target" if v["planned_tokens"] == v["target_tokens"] else "feasible"


def explanations(plan: dict) -> list[str]:
    """One self-explaining line per mixture source: tokens available, target, achieved, passes, feasibility."""
    return [
        f"{name}: {v['available_tokens']:,} tokens available, target {100 * v['target_share']:.1f}% = "
        f"{v['target_tokens']:,}, achieved {v['achieved_tokens']:,} ({100 * v['achieved_share']:.1f}%); "
        f"passes over the data {passes_text(v, exact=True)}; {why_text(v, plan)}."
        for name, v in plan["sources"].items()
    ]


def infeasible_warnings(plan: dict) -> list[str]:
    """One console line per infeasible source: what could not be met, why, and what was done instead."""
    lines = []
    for name, v in plan["sources"].items():
        if v["feasible"]:
            continue
        unfilled = v["target_tokens"] - v["planned_tokens"]
        lines.append(
            f"mixture: the {100 * v['target_share']:.1f}% target for {name} ({v['target_tokens']:,} tokens) cannot "
            f"be met: {v['why_infeasible']}; it gets {v['planned_tokens']:,} tokens"
            + (f" and its other {unfilled:,} went to the other sources by weight" if unfilled > 0 else "")
        )
    return lines


MIXED = MixedBySource()


def mixture_report(plan: dict, entry: dict, tokens_per_char: float) -> dict:
    """The plan beside what was achieved: tokens written per source, repeats included."""
    mixed = entry.get("mixed_by_source", {})
    # The total is what the stage wrote, repeats included, estimated from the summed characters
    # as the funnel estimates (without repeats it is the funnel's kept figure), so the shares
    # add up to 1; the per-source figures are each rounded and may sum to it give or take one
    # per source.
    chars = entry.get("kept", {}).get("chars", 0) + entry.get("repeats", {}).get("chars", 0)
    total = estimate_tokens(chars, tokens_per_char) if "kept" in entry else sum(v["tokens_est"] for v in mixed.values())
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
    """``funnel["mixture"]`` and ``mixture.json``: the plan beside what was achieved.
    ``funnel["mixture"]["warnings"]``: one line per infeasible source, also added to the run's
    ``funnel["warnings"]``, which the run says on the console."""
    plan = read(PLAN_FILE)
    if plan is not None:
        funnel["mixture"] = mixture_report(plan, entry, funnel["tokens_per_char"])
        funnel["mixture"]["warnings"] = infeasible_warnings(funnel["mixture"])
        funnel.setdefault("warnings", []).extend(funnel["mixture"]["warnings"])  # said on the console
        write("mixture.json", funnel["mixture"])


def weights_notes(cfg: MixingConfig) -> list[str]:
    """Warnings before the run: weights that do not sum to 1 (they are normalised, and recorded
    in mixture.json); source_map targets that have no weight (their documents count as `other`,
    or are rejected when the mixture has no `other`)."""
    notes = []
    if not weights_sum_to_one(cfg.weights):
        total = math.fsum(cfg.weights.values())
        normalised = ", ".join(f"{k} {v / total:.4g}" for k, v in cfg.weights.items())
        notes.append(
            f"warning: stages.mixing.weights sum to {total:g}, not 1; they are normalised to {normalised} "
            "(recorded in mixture.json)"
        )
    unweighted: dict[str, list[str]] = {}
    for raw, target in cfg.source_map.items():
        if target not in cfg.weights:
            unweighted.setdefault(target, []).append(raw)
    fate = "count as 'other'" if "other" in cfg.weights else "are rejected (source_not_in_mixture: no 'other' weight)"
    for target, raws in unweighted.items():
        notes.append(
            f"warning: stages.mixing.source_map maps {', '.join(raws)} to {target!r}, which has no weight in "
            f"stages.mixing.weights; those documents {fate}"
        )
    return notes


def build_mixing(cfg: MixingConfig, ctx: BuildContext) -> list[Stage]:
    return [Mix(ctx.columns, cfg, ctx.tokens_per_char, FileSystems.join(ctx.staging, PLAN_FILE))]


register(
    StageSpec(
        key="mixing",
        config=MixingConfig,
        build=build_mixing,
        order=90,
        stats=(MIXED,),
        publish=publish_mixture,
        notes=weights_notes,
    )
)
