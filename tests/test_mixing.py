"""Mixture weighting: shares, infeasible targets, determinism."""

from __future__ import annotations

import json
from fractions import Fraction

from conftest import only_stages, read_dir, run_pipeline, write_parquet

from curate.classifiers.mixture import plan_mixture

WEIGHTS = {"synthetic_textbook": 0.35, "synthetic_exercises": 0.15, "filtered_web": 0.30, "code": 0.15, "other": 0.05}
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


def _corpus(tmp_path, counts: dict[str, int]):
    rows, n = [], 0
    for source, count in counts.items():
        for i in range(count):
            length = 20 + (n * 7919) % 180  # varied lengths, 20..199 words
            text = " ".join(WORDS[(n + k) % len(WORDS)] for k in range(length)) + f" doc{n}"
            rows.append({"id": f"d{n:06d}", "text": text, "source": source})
            n += 1
    write_parquet(tmp_path / "in.parquet", rows)
    return tmp_path / "in.parquet"


def _shares(out) -> dict:
    kept = read_dir(out / "kept")
    tokens = {}
    for source, text in zip(kept.column("mixture_source").to_pylist(), kept.column("text").to_pylist()):
        tokens[source] = tokens.get(source, 0) + len(text)
    total = sum(tokens.values())
    return {s: t / total for s, t in tokens.items()}


def test_feasible_mix_hits_targets_within_one_point(tmp_path):
    counts = {
        "synthetic_textbook": 6000,
        "synthetic_exercises": 3000,
        "filtered_web": 9000,
        "code": 2500,
        "other": 1500,
    }  # 22,000 documents; code must be repeated ~1.4x to reach 15%
    src = _corpus(tmp_path, counts)
    cfg = only_stages("mixing", mixing={"weights": WEIGHTS, "token_budget": 4_000_000, "max_epochs": 4})
    result = run_pipeline([src], tmp_path / "out", cfg)
    shares = _shares(tmp_path / "out")
    for source, target in WEIGHTS.items():
        assert abs(shares[source] - target) <= 0.01, (source, shares[source], target)
    mixture = json.loads((tmp_path / "out" / "mixture.json").read_text())
    assert mixture["infeasible"] == [] and mixture["budget_met"]
    assert mixture["sources"]["code"]["epochs"] == 2 and mixture["sources"]["filtered_web"]["sampling_rate"] < 1
    kept = read_dir(tmp_path / "out" / "kept")
    assert max(kept.column("epoch").to_pylist()) == 1  # repeated documents carry their epoch
    stage = next(s for s in result.funnel["stages"] if s["name"] == "mixing")
    assert stage["in"]["docs"] == sum(counts.values()) == stage["kept"]["docs"] + stage["rejected"]["docs"]
    assert set(stage["rejected_by_reason"]) <= {f"sampled_out:{s}" for s in WEIGHTS}
    assert kept.num_rows == stage["kept"]["docs"] + stage["repeats"]["docs"]
    # the mixture's total counts what was written, repeats included, as its per-source rows do
    achieved = [v["achieved_tokens"] for v in mixture["sources"].values()]
    assert abs(mixture["achieved_tokens"] - sum(achieved)) <= len(achieved)
    assert abs(sum(v["achieved_share"] for v in mixture["sources"].values()) - 1) < 1e-3
    funnel_md = (tmp_path / "out" / "funnel.md").read_text()
    repeats = stage["repeats"]["docs"]
    said = f"mixing wrote its {stage['kept']['docs']:,} kept documents as {kept.num_rows:,} rows: {repeats:,}"
    assert said in funnel_md and said in (tmp_path / "out" / "report.html").read_text()


def test_infeasible_target_is_reported_and_renormalized(tmp_path):
    plan = plan_mixture({"a": 1000, "b": 10, "c": 5000}, {"a": 0.5, "b": 0.3, "c": 0.2}, 3000, max_epochs=4)
    assert plan["infeasible"] == ["b"]
    assert plan["sources"]["b"]["planned_tokens"] == 40  # capped at 4 epochs x 10 tokens
    # the 860 tokens b cannot fill go to a and c in proportion 5:2
    assert plan["sources"]["a"]["planned_tokens"] == round(1500 + 860 * 5 / 7)
    assert plan["sources"]["c"]["planned_tokens"] == round(600 + 860 * 2 / 7)
    assert plan["budget_met"]
    # in a run: a source with no documents is infeasible and named in the funnel
    src = _corpus(tmp_path, {"filtered_web": 300, "code": 100})
    run_pipeline([src], tmp_path / "out", only_stages("mixing", mixing={"weights": WEIGHTS}))
    funnel_md = (tmp_path / "out" / "funnel.md").read_text()
    assert "Infeasible: other, synthetic_exercises, synthetic_textbook" in funnel_md
    # each row explains itself: why it is infeasible and what was done instead
    why = "infeasible: no documents of this source were left after filtering; planned 0 tokens instead"
    assert "- synthetic_textbook: 0 tokens available, target 35.0% = " in funnel_md
    assert funnel_md.count(why) == 3
    mixture = json.loads((tmp_path / "out" / "mixture.json").read_text())
    assert [w.split(" target for ")[1].split(" ")[0] for w in mixture["warnings"]] == mixture["infeasible"]
    assert all("no documents of this source were left" in w for w in mixture["warnings"])


def test_rows_name_the_epoch_cap_passes_and_redistribution():
    from curate.transforms.mixing import MIXED, infeasible_warnings, mixture_report, passes_text

    plan = plan_mixture({"a": 1000, "b": 10, "c": 5000}, {"a": 0.5, "b": 0.3, "c": 0.2}, 3000, max_epochs=4)
    entry = {"mixed_by_source": {"a": {"docs": 9, "tokens_est": 2114}, "b": {"docs": 4, "tokens_est": 40}}}
    report = mixture_report(plan, entry, 0.25)
    md = "\n".join(MIXED.markdown({}, {"mixture": report}))
    html = "\n".join(MIXED.html({}, {"mixture": report}, {}))
    for text in (md, html):
        assert "infeasible: its target needs more than max_epochs (4) passes over the 10 tokens left" in text
        assert "its unfilled 860 target tokens went to the other sources by weight" in text
        assert "takes 614 tokens more than its target, redistributed from infeasible sources" in text
    assert "| b | 10 | 30.0% = 900 | 40 | 40 (1.9%) | 4: every document 4 times | NO |" in md
    [warning] = infeasible_warnings(report)
    assert warning.startswith("mixture: the 30.0% target for b (900 tokens) cannot be met: its target needs")
    assert passes_text({"sampling_rate_exact": "7/5", "epochs": 2}) == (
        "1.4: every document once, 40.0% of them once more (up to 2 copies)"
    )
    assert passes_text({"sampling_rate_exact": "1/3", "epochs": 1}, exact=True).startswith(
        "1/3 ≈ 0.333333: a sample of 33.3%"
    )
    assert passes_text({"sampling_rate_exact": "1", "epochs": 1}) == "1: every document once"
    long = {"sampling_rate_exact": "16908314440999791121/22600864369996096290", "epochs": 1}
    assert passes_text(long, exact=True) == "≈ 0.748127: a sample of 74.8%, each document at most once"


def test_decimal_weights_that_sum_to_one_carry_no_normalisation_note():
    """The Phi-3 weights' binary values do not sum to exactly 1: no note that they 'sum to 1, not 1'."""
    phi3 = {"synthetic_textbook": 0.35, "synthetic_exercises": 0.15, "filtered_web": 0.30, "code": 0.15, "other": 0.05}
    assert sum(map(Fraction, phi3.values())) != 1  # the exact sum the note used to trip on
    plan = plan_mixture({s: 1000 for s in phi3}, phi3, 2000)
    assert plan["weights_note"] is None and plan["weights_normalised"] is None
    doubled = plan_mixture({s: 1000 for s in phi3}, {s: 2 * w for s, w in phi3.items()}, 2000)
    assert doubled["weights_note"].startswith("the configured weights sum to 2, not 1")
    assert doubled["weights_normalised"]["synthetic_textbook"] == 0.35


def test_no_budget_means_no_source_repeats_even_when_some_have_no_data():
    """The null budget is the largest no source repeats for, with the share of
    sources that have no documents redistributed over those that do."""
    weights = {"textbook": 0.35, "web": 0.30, "code": 0.15, "other": 0.2}
    plan = plan_mixture({"web": 3000, "other": 500}, weights, None, max_epochs=4)
    rates = {s: v["sampling_rate"] for s, v in plan["sources"].items()}
    assert max(rates.values()) == 1.0 and rates["other"] == 1.0  # the binding source is taken whole
    assert all(r <= 1.0 for r in rates.values())
    # web : other keep their 0.30 : 0.20 ratio
    assert plan["sources"]["web"]["planned_tokens"] == round(500 * 0.30 / 0.20)
    only_one = plan_mixture({"other": 1234}, weights, None)
    assert only_one["sources"]["other"]["sampling_rate"] == 1.0 and only_one["planned_tokens"] == 1234


def test_same_seed_same_output_other_seed_differs(tmp_path):
    src = _corpus(tmp_path, {"filtered_web": 800, "code": 200})
    cfg = {"weights": {"filtered_web": 0.5, "code": 0.5}, "token_budget": 20000}

    def kept_ids(name, seed):
        run_pipeline([src], tmp_path / name, only_stages("mixing", mixing={**cfg, "seed": seed}))
        return [(r["id"], r["epoch"]) for r in read_dir(tmp_path / name / "kept").to_pylist()]

    a, b, c = kept_ids("a", 0), kept_ids("b", 0), kept_ids("c", 1)
    assert a == b and a != c
    files = sorted(p.name for p in (tmp_path / "a" / "kept").glob("*.parquet"))
    for f in files:
        assert (tmp_path / "a" / "kept" / f).read_bytes() == (tmp_path / "b" / "kept" / f).read_bytes()


def test_source_from_input_globs(tmp_path):
    write_parquet(tmp_path / "web" / "a.parquet", [{"id": f"w{i}", "text": f"web page {i} words"} for i in range(50)])
    write_parquet(
        tmp_path / "code" / "b.parquet", [{"id": f"c{i}", "text": f"def f{i}(): return {i}"} for i in range(50)]
    )
    cfg = only_stages("mixing", mixing={"weights": {"web": 0.5, "code": 0.5}, "token_budget": 500})
    cfg["input"] = {
        "sources": {str(tmp_path / "web" / "*.parquet"): "web", str(tmp_path / "code" / "*.parquet"): "code"}
    }
    run_pipeline([tmp_path / "*" / "*.parquet"], tmp_path / "out", cfg)
    kept = read_dir(tmp_path / "out" / "kept")
    by_source = dict(zip(kept.column("id").to_pylist(), kept.column("source").to_pylist()))
    assert by_source and all(v == ("web" if k.startswith("w") else "code") for k, v in by_source.items())
