"""Every shipped config loads and validates."""

from pathlib import Path

import pytest
import yaml

from curate.pipelines.config import config_from_dict

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_is_valid(path):
    data = yaml.safe_load(path.read_text())
    if path.name == "mixtures.yaml":  # a library of weights, each a valid stages.mixing.weights
        for name, weights in data.items():
            assert abs(sum(weights.values()) - 1.0) < 1e-9, name
            config_from_dict({"stages": {"mixing": {"weights": weights}}})
        return
    config_from_dict(data)
