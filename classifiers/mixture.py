"""Mixture weighting: per-source sampling rates to hit target token shares.

Plan.  ``available[s]`` tokens per source after filtering, target weights
``w[s]`` (normalized to sum 1) and a token budget ``B`` give target tokens
``B * w[s]`` and a sampling rate ``r[s] = target / available``: below 1 a source
is down-sampled, above 1 it is repeated (up-sampled) for ``ceil(r)`` epochs.
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

import numpy as np
import xxhash


def plan_mixture(available: dict[str, float], weights: dict[str, float], budget: float | None,
                 max_epochs: float = 4.0) -> dict:
    total_w = sum(weights.values())
    w = {s: weights[s] / total_w for s in weights}
    avail = {s: float(available.get(s, 0.0)) for s in w}
    with_data = [s for s in w if avail[s] > 0 and w[s] > 0]
    if budget is None:  # the share of sources with no data goes to the others: weigh those alone
        w_data = sum(w[s] for s in with_data)
        budget = min((avail[s] * w_data / w[s] for s in with_data), default=0.0)
    cap = {s: max_epochs * avail[s] for s in w}
    allotted: dict[str, float] = {}
    capped: set[str] = set()
    remaining_budget, open_sources = float(budget), [s for s in w if w[s] > 0]
    while open_sources:
        open_w = sum(w[s] for s in open_sources)
        share = {s: remaining_budget * w[s] / open_w for s in open_sources}
        newly = [s for s in open_sources if share[s] > cap[s] + 1e-9]
        if not newly:
            allotted.update(share)
            break
        for s in newly:
            allotted[s] = cap[s]
            capped.add(s)
            remaining_budget -= cap[s]
        open_sources = [s for s in open_sources if s not in capped]
    for s in w:
        allotted.setdefault(s, 0.0)
    delivered = sum(allotted.values())
    sources = {}
    for s in sorted(w):
        rate = allotted[s] / avail[s] if avail[s] > 0 else 0.0
        sources[s] = {
            "available_tokens": round(avail[s]), "target_share": round(w[s], 6),
            "target_tokens": round(budget * w[s]), "planned_tokens": round(allotted[s]),
            "sampling_rate": round(rate, 6), "epochs": math.ceil(rate) if rate > 0 else 0,
            "feasible": s not in capped and (avail[s] > 0 or w[s] == 0),
        }
    infeasible = [s for s, v in sources.items() if not v["feasible"]]
    return {
        "budget_tokens": round(budget), "planned_tokens": round(delivered), "max_epochs": max_epochs,
        "sources": sources, "infeasible": infeasible,
        "rule": "infeasible sources are capped at max_epochs x available tokens; their unfilled budget is "
                "redistributed over the other sources in proportion to their weights (water-filling)",
        "budget_met": abs(delivered - budget) <= max(1.0, 1e-6 * budget),
    }


def epochs_for(ids: list[str], rate: float, seed: int) -> np.ndarray:
    """Copies of each document (0 = sampled out) for a source with ``rate``."""
    whole = math.floor(rate)
    frac = rate - whole
    if frac <= 0:
        return np.full(len(ids), whole, dtype=np.int64)
    digest = xxhash.xxh64_intdigest
    prefix = f"{seed}\x1f"
    u = np.fromiter((digest((prefix + i).encode("utf-8")) for i in ids), dtype=np.uint64, count=len(ids)) / 2.0**64
    return whole + (u < frac).astype(np.int64)
