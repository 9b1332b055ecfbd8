"""A new stage is one unit, defined here in the test file alone: its typed config, a
pure keep/drop function with reasons, and one registration; the pipeline, the funnel's
conservation check and the report pick it up from the registry."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest
from conftest import read_rejects, run_pipeline
from pydantic import Field

from curate.pipelines.build import sample_corpus_path
from curate.pipelines.config import ConfigError, config_from_dict
from curate.transforms import registry


class MinWordsConfig(registry.StageConfig):
    enabled: bool = False
    min_words: int = Field(50, ge=1)  # fewer words than this: too short to teach anything


def too_short(texts, cfg: MinWordsConfig):
    words = pc.list_value_length(pc.utf8_split_whitespace(texts)).to_numpy(zero_copy_only=False)
    return [f"words<{cfg.min_words}" if n < cfg.min_words else None for n in words]


MIN_WORDS = registry.filter_stage("min_words", MinWordsConfig, too_short, order=45)  # after language


def test_a_stage_defined_in_a_test_file_runs_with_its_reasons_in_funnel_and_report(tmp_path):
    with registry.registered(MIN_WORDS):
        result = run_pipeline(
            [sample_corpus_path()], tmp_path / "out", {"stages": {"min_words": {"enabled": True, "min_words": 80}}}
        )
    funnel = result.funnel
    assert funnel["conservation"]["ok"]
    names = [s["name"] for s in funnel["stages"] if s["status"] == "run"]
    assert names.index("language") + 1 == names.index("min_words")  # its place in the chain, from its order
    stage = next(s for s in funnel["stages"] if s["name"] == "min_words")
    assert stage["rejected_by_reason"]["words<80"]["docs"] == stage["rejected"]["docs"] > 0
    rejects = read_rejects(tmp_path / "out")["min_words"]
    assert set(rejects.column("reason").to_pylist()) == {"words<80"}
    assert rejects.num_rows == stage["rejected"]["docs"]
    assert "words&lt;80" in (tmp_path / "out" / "report.html").read_text()
    assert "| min_words | words<80 |" in (tmp_path / "out" / "funnel.md").read_text()


def test_a_registered_stage_has_a_typed_validated_config():
    with registry.registered(MIN_WORDS):
        with pytest.raises(ConfigError, match="config key stages.min_words.min_words: must be >= 1"):
            config_from_dict({"stages": {"min_words": {"min_words": 0}}})
        cfg = config_from_dict({"stages": {"min_words": {"enabled": True}}})
        assert isinstance(cfg.stages.min_words, MinWordsConfig) and cfg.stages.min_words.min_words == 50
    with pytest.raises(ConfigError, match="unknown key"):  # gone with its registration
        config_from_dict({"stages": {"min_words": {"enabled": True}}})


def test_funnel_of_a_run_without_the_stage_does_not_mention_it(tmp_path):
    result = run_pipeline([sample_corpus_path()], tmp_path / "out")
    assert "min_words" not in json.dumps(result.funnel)


def test_a_config_can_run_the_stages_in_its_own_order(tmp_path):
    """FineWeb runs its filters before MinHash; the funnel follows the order that ran."""
    with registry.registered(MIN_WORDS):
        result = run_pipeline(
            [sample_corpus_path()],
            tmp_path / "out",
            {
                "order": ["language", "min_words", "exact_dedup", "near_dedup"],
                "stages": {"min_words": {"enabled": True}},
            },
        )
    names = [s["name"] for s in result.funnel["stages"] if s["status"] == "run"]
    assert names[:5] == ["input_check", "language", "min_words", "exact_dedup", "near_dedup"]
    assert result.funnel["conservation"]["ok"]
    with pytest.raises(ConfigError, match="config key order\\[1\\]: 'minhash' is not a stage"):
        config_from_dict({"order": ["language", "minhash"]})
