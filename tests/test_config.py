import pytest

from curate.pipelines.config import ConfigError, config_from_dict, load_config


def test_packaged_default_loads():
    cfg = load_config()
    assert cfg.input.text_column == "text" and cfg.output.compression == "zstd"
    assert cfg.stages.exact_dedup.enabled is True


@pytest.mark.parametrize(
    "data,key",
    [
        ({"inputs": {}}, "inputs"),
        ({"input": {"batchsize": 3}}, "input.batchsize"),
        ({"input": {"batch_size": "big"}}, "input.batch_size"),
        ({"input": {"batch_size": 0}}, "input.batch_size"),
        ({"output": {"num_shards": 1.5}}, "output.num_shards"),
        ({"stages": {"exact_dedup": {"enabled": "yes"}}}, "stages.exact_dedup.enabled"),
        ({"tokens_per_char": -1}, "tokens_per_char"),
        ({"output": {"compression": "rar"}}, "output.compression"),
        ({"stages": {"exact_dedup": {"join": "broadcast"}}}, "stages.exact_dedup.join"),
        ({"stages": {"near_dedup": {"join": "hash"}}}, "stages.near_dedup.join"),
    ],
)
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert f"config key {key}:" in str(err.value)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("input: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(evil))
    assert "not valid YAML" in str(err.value) and str(evil) in str(err.value)


def test_shard_counts_follow_the_input_unless_set():
    out = load_config().output
    assert [out.kept_shards(n) for n in (0, 100_000, 100_001, 1_000_000)] == [4, 4, 5, 40]
    assert [out.rejects_shards(n) for n in (0, 25_000, 25_001, 1_000_000)] == [1, 1, 2, 40]
    fixed = out.model_copy(update={"num_shards": 7, "reject_shards": 3})
    assert (fixed.kept_shards(10**9), fixed.rejects_shards(10**9)) == (7, 3)
