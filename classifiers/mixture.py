"""Mixture weighting: per-source sampling rates to hit target token shares.

Plan.  ``available[s]`` tokens per source after filtering, target weights
``w[s]`` (normalized to sum 1) and a token budget ``B`` give target tokens
``B * w[s]`` and a sampling rate ``r[s] = target / available``: below 1 a source
is down-sampled, above 1 it is repeated (up-sampled) for ``ceil(r)`` epochs.
All of it in exact fractions: float sums differ with the order a runner adds
them in, and ``ceil`` turns 1.0000000000000002 into 2 epochs.
With no budget, ``B`` is the largest budget no source has to repeat for:
``min_s available[s] * W / w[s]`` over sources with data, ``W`` their total
weight (the target of a source with no data is redistributed over them, see
below, so they must fit its share too).

Infeasible targets (documented rule, never silent).  A source cannot exceed
``max_epochs`` repetitions (default 4, beyond which repeated data stops
helping; Muennighoff et al. 2023).  Such a source is capped at
``max_epochs * available[s]`` and marked infeasible; the budget it cannot fill
is redistributed over the remaining sources in proportion to their weights,
repeatedly, until no new source hits its cap ("water-filling").  If every
source is capped the mix delivers less than the budget, and says so.  Sources
with no documents are infeasible with rate 0.

Sampling.  Deterministic by document id: a document of a source with rate
``r`` is kept for ``floor(r)`` epochs, plus one more epoch when
``u(seed, id) < r - floor(r)``, where ``u`` is xxh64 of seed and id scaled to
[0, 1).  The same seed gives the same output on any runner.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import xxhash


def _exact(x) -> Fraction:
    """A number as an exact fraction (a float's own binary value: no decimal guessing)."""
    return x if isinstance(x, Fraction) else Fraction(x)


# Weights written as decimals (.35, .15, .30, .15, .05) sum to 0.9999999999999999 as binary
# floats: within this of 1 they are taken as summing to 1 (the plan still divides by the exact sum).
WEIGHT_SUM_TOLERANCE = 1e-9


def weights_sum_to_one(weights: dict[str, float]) -> bool:
    """Whether the configured weights sum to 1 as written (up to ``WEIGHT_SUM_TOLERANCE``)."""
    return abs(math.fsum(float(v) for v in weights.values()) - 1.0) <= WEIGHT_SUM_TOLERANCE


def _fraction_text(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def tokens_from_chars(chars: dict[str, int], tokens_per_char: float) -> dict[str, Fraction]:
    """Available tokens per source, exactly: integer character sums times the rate as a fraction."""
    rate = _exact(tokens_per_char)
    return {s: int(n) * rate for s, n in chars.items()}


def plan_mixture(available: dict, weights: dict[str, float], budget: float | None, max_epochs: float = 4.0) -> dict:
    """The plan, computed in exact fractions.

    ``available`` should be exact (integers or Fractions: the pipeline sums
    integer characters and multiplies by the tokens-per-character rate as a
    fraction), so the plan does not depend on the order a runner summed the
    sources in: a rate of exactly 1 is 1 epoch on every runner and worker count."""
    total_w = sum((_exact(v) for v in weights.values()), Fraction(0))
    w = {s: _exact(weights[s]) / total_w for s in weights}
    avail = {s: _exact(available.get(s, 0)) for s in w}
    max_ep = _exact(max_epochs)
    with_data = [s for s in w if avail[s] > 0 and w[s] > 0]
    if budget is None:  # the share of sources with no data goes to the others: weigh those alone
        w_data = sum((w[s] for s in with_data), Fraction(0))
        budget_x = min((avail[s] * w_data / w[s] for s in with_data), default=Fraction(0))
    else:
        budget_x = _exact(budget)
    cap = {s: max_ep * avail[s] for s in w}
    allotted: dict[str, Fraction] = {}
    capped: set[str] = set()
    remaining_budget, open_sources = budget_x, [s for s in w if w[s] > 0]
    while open_sources:
        open_w = sum((w[s] for s in open_sources), Fraction(0))
        share = {s: remaining_budget * w[s] / open_w for s in open_sources}
        newly = [s for s in open_sources if share[s] > cap[s]]
        if not newly:
            allotted.update(share)
            break
        for s in newly:
            allotted[s] = cap[s]
            capped.add(s)
            remaining_budget -= cap[s]
        open_sources = [s for s in open_sources if s not in capped]
    for s in w:
        allotted.setdefault(s, Fraction(0))
    delivered = sum(allotted.values(), Fraction(0))
    sources = {}
    for s in sorted(w):
        rate = allotted[s] / avail[s] if avail[s] > 0 else Fraction(0)
        sources[s] = {
            "available_tokens": round(avail[s]),
            "target_share": round(float(w[s]), 6),
            "target_tokens": round(budget_x * w[s]),
            "planned_tokens": round(allotted[s]),
            "sampling_rate": round(float(rate), 6),
            "sampling_rate_exact": _fraction_text(rate),
            "epochs": math.ceil(rate),
            "feasible": s not in capped and (avail[s] > 0 or w[s] == 0),
            "why_infeasible": (
                None
                if s not in capped and (avail[s] > 0 or w[s] == 0)
                else "no documents of this source were left after filtering"
                if avail[s] == 0
                else f"its target needs more than max_epochs ({float(max_ep):g}) passes over the "
                f"{round(avail[s]):,} tokens left"
            ),
        }
    infeasible = [s for s, v in sources.items() if not v["feasible"]]
    given_sum = math.fsum(float(v) for v in weights.values())
    as_written = weights_sum_to_one(weights)
    return {
        "budget_tokens": round(budget_x),
        "planned_tokens": round(delivered),
        "max_epochs": max_epochs,
        "sources": sources,
        "infeasible": infeasible,
        "weights_given": {s: float(weights[s]) for s in sorted(weights)},
        "weights_normalised": (None if as_written else {s: round(float(w[s]), 6) for s in sorted(w)}),
        "weights_note": (
            None if as_written else f"the configured weights sum to {given_sum:g}, not 1: they were normalised"
        ),
        "rule": "infeasible sources are capped at max_epochs x available tokens; their unfilled budget is "
        "redistributed over the other sources in proportion to their weights (water-filling)",
        "budget_met": delivered == budget_x,
    }


def epochs_for(ids: list[str], rate, seed: int) -> np.ndarray:
    """Copies of each document (0 = sampled out) for a source with ``rate`` (a Fraction from the
    plan's ``sampling_rate_exact``, or a float)."""
    rate = _exact(rate)
    whole = math.floor(rate)
    frac = float(rate - whole)
    if frac <= 0:
        return np.full(len(ids), whole, dtype=np.int64)
    digest = xxhash.xxh64_intdigest
    prefix = f"{seed}\x1f"
    u = np.fromiter((digest((prefix + i).encode("utf-8")) for i in ids), dtype=np.uint64, count=len(ids)) / 2.0**64
    return whole + (u < frac).astype(np.int64)
