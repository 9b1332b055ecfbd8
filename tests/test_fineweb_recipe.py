"""configs/fineweb.yaml: FineWeb's recipe on the stage registry, in FineWeb's order, each rule a reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import CURATE, read_rejects

from curate.pipelines.config import load_config

REPO = Path(__file__).resolve().parents[1]


def test_fineweb_config_runs_the_filters_in_fineweb_order_before_minhash(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [CURATE, "run", "--config", "configs/fineweb.yaml", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    funnel = json.loads((out / "funnel.json").read_text())
    ran = [s["name"] for s in funnel["stages"] if s["status"] == "run"]
    assert ran == ["input_check", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb", "near_dedup"]
    assert funnel["conservation"]["ok"]
    rejects = read_rejects(out)
    for family in ("gopher_repetition", "gopher_quality", "c4", "fineweb"):
        stage = next(s for s in funnel["stages"] if s["name"] == family)
        reasons = set(rejects[family].column("reason").to_pylist()) if family in rejects else set()
        assert reasons == set(stage["rejected_by_reason"]), family
        assert all(r.startswith(family + ":") for r in reasons), reasons  # one reason per rule, named by family
    assert "gopher_quality" in rejects and rejects["gopher_quality"].num_rows > 0


def test_heuristic_stages_are_off_by_default_and_typed():
    cfg = load_config()
    for key in ("gopher_repetition", "gopher_quality", "c4", "fineweb"):
        assert getattr(cfg.stages, key).enabled is False
    fw = load_config([str(REPO / "configs" / "fineweb.yaml")])
    assert fw.stages.c4.rules().filter_no_terminal_punct is False  # FineWeb's deviation from C4
    assert fw.stages.gopher_repetition.rules().top_n_grams == ((2, 0.2), (3, 0.18), (4, 0.16))
