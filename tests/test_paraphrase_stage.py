"""Stage ``paraphrase`` in the pipeline: a rephrased benchmark item inside a page is rejected with
its item, a page with the same story and other numbers passes, and the funnel conserves."""

from __future__ import annotations

import pytest
from conftest import only_stages, read_rejects, run_pipeline, write_parquet

from curate.classifiers import embedding

pytestmark = pytest.mark.skipif(embedding.available() is not None, reason=str(embedding.available()))

HOST = (
    "Our weekend maths club keeps a list of practice problems for the younger members. "
    "Everyone brings one puzzle and we work through them together over tea.\n\n"
)
# sample_benchmark.jsonl's first item, rephrased by hand (same quantities, new wording)
REPHRASED = (
    "Every morning a bakery turns out 14 rye loaves, and it bakes three times that number of white loaves. "
    "By the time the shop closes, only 9 loaves are left unsold. How many loaves get sold daily?"
)
# the same story with other quantities and another question: a different problem, must pass
OTHER = (
    "Every morning a bakery turns out 20 rye loaves, and it bakes twice that number of white loaves. "
    "The baker gives 5 loaves to a shelter. How many white loaves are left for the shop?"
)
TAIL = "\n\nWe meet again next Saturday at the library; bring pencils and a friend."


def test_rephrased_item_is_rejected_and_a_changed_problem_passes(tmp_path):
    rows = [
        {"id": "contaminated", "text": HOST + REPHRASED + TAIL},
        {"id": "other-problem", "text": HOST + OTHER + TAIL},
        {"id": "plain", "text": HOST + "This week we talked about prime numbers and their patterns." + TAIL},
    ]
    shard = write_parquet(tmp_path / "in.parquet", rows)
    result = run_pipeline([shard], tmp_path / "out", only_stages("paraphrase"))
    assert result.funnel["conservation"]["ok"]
    rejected = read_rejects(tmp_path / "out")["paraphrase"].to_pylist()
    assert [r["id"] for r in rejected] == ["contaminated"]
    hit = rejected[0]
    assert (
        hit["reason"] == "paraphrase:sample_benchmark:gsm8k/1" and hit["paraphrase_item"] == "sample_benchmark:gsm8k/1"
    )
    start, end = map(int, hit["paraphrase_span"].split(":"))
    assert "14 rye loaves" in hit["text"][start:end] and hit["paraphrase_similarity"] > 0.5
    # counted per benchmark beside the n-gram stage's contamination table, in funnel.md and the report
    stage = next(s for s in result.funnel["stages"] if s["name"] == "paraphrase")
    assert stage["paraphrase"]["benchmarks"] == {"sample_benchmark": {"docs_dropped": 1, "items_found": 1}}
    assert "| sample_benchmark | 1 | 1 |" in (tmp_path / "out" / "funnel.md").read_text()
    assert "<h2>Paraphrased benchmark items</h2>" in (tmp_path / "out" / "report.html").read_text()


def test_semantic_dedup_removes_a_paraphrased_page_that_minhash_keeps(tmp_path):
    a = (
        "The city council approved a new budget on Tuesday that raises spending on public parks by ten "
        "percent and delays the bridge repair until next spring, citing rising costs of steel."
    )
    b = (
        "On Tuesday the city council passed a new budget, which increases park spending by ten percent "
        "and pushes the bridge repair back to next spring because steel has become more expensive."
    )
    c = "Our cat learned to open the kitchen door, and now the dog follows her everywhere she goes at night."
    rows = [{"id": "a", "text": a}, {"id": "b", "text": b}, {"id": "c", "text": c}]
    shard = write_parquet(tmp_path / "in.parquet", rows)
    result = run_pipeline(
        [shard], tmp_path / "out", only_stages("near_dedup", "semantic_dedup", semantic_dedup={"eps": 0.1})
    )
    funnel = {s["name"]: s for s in result.funnel["stages"] if s["status"] == "run"}
    assert funnel["near_dedup"]["rejected"]["docs"] == 0  # the paraphrase shares few 5-grams
    rejects = read_rejects(tmp_path / "out")["semantic_dedup"].to_pylist()
    assert [(r["id"], r["reason"], r["duplicate_of"]) for r in rejects] == [("b", "semantic_duplicate", "a")]
    assert result.funnel["conservation"]["ok"]


def test_item_index_built_once_in_chunks_and_worker_processes_agree(tmp_path, benchmarks_dir):
    """The item views are embedded once per run, in fixed chunks spread over the workers,
    and reach every worker as side inputs: a rephrased item whose views sit in the second
    chunk is found, and two worker processes publish the same bytes as one in-process worker."""
    import json

    from curate.classifiers.paraphrase import VIEW_CHUNK

    n_items = VIEW_CHUNK // 2 + 50  # two views per GSM8K item: the views fill more than one chunk
    lines = (benchmarks_dir / "gsm8k_test.jsonl").read_text().splitlines()[:n_items]
    bench = tmp_path / "gsm8k_part.jsonl"
    bench.write_text("\n".join(lines) + "\n")
    rephrased = (benchmarks_dir / "rephrased" / "rephrase_gsm8k.jsonl").read_text().splitlines()
    line = n_items - 10  # views 2 * (line - 1) and after: past the first chunk
    assert 2 * (line - 1) >= VIEW_CHUNK
    rows = [
        {"id": "contaminated", "text": HOST + json.loads(rephrased[line - 1])["text"] + TAIL},
        {"id": "plain", "text": HOST + "This week we talked about prime numbers and their patterns." + TAIL},
    ]
    shard = write_parquet(tmp_path / "in.parquet", rows)
    cfg = only_stages(
        "paraphrase", paraphrase={"benchmarks": [{"name": "gsm8k", "format": "gsm8k", "path": str(bench)}]}
    )
    published = {}
    for label, args in (
        ("in_process", ["--direct_running_mode=in_memory", "--direct_num_workers=1"]),
        ("two_processes", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
    ):
        out = tmp_path / label
        result = run_pipeline([shard], out, cfg, beam_args=args)
        assert result.funnel["conservation"]["ok"]
        rejected = read_rejects(out)["paraphrase"].to_pylist()
        assert [(r["id"], r["reason"]) for r in rejected] == [("contaminated", f"paraphrase:gsm8k:gsm8k/{line}")]
        published[label] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}
    assert published["in_process"] == published["two_processes"]
