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
        # YAML's .inf and .nan are floats, and no setting means them
        ({"stages": {"mixing": {"weights": {"code": float("inf"), "other": 1.0}}}}, "stages.mixing.weights.code"),
        ({"stages": {"mixing": {"max_epochs": float("nan")}}}, "stages.mixing.max_epochs"),
        ({"tokens_per_char": float("inf")}, "tokens_per_char"),
        # a weight one letter from a source_map target: a misspelling, not a source for `other`
        (
            {
                "stages": {
                    "mixing": {
                        "source_map": {"stdlib_docs": "synthetic_textbook"},
                        "weights": {"synthetic_textbok": 0.5, "other": 0.5},
                    }
                }
            },
            "stages.mixing.source_map.stdlib_docs",
        ),
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


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    """Plain YAML keeps the last of two equal keys: the stage below would quietly be off."""
    twice = tmp_path / "twice.yaml"
    twice.write_text("stages:\n  exact_dedup:\n    enabled: true\n    enabled: false\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(twice))
    assert str(twice) in str(err.value) and "key 'enabled' given twice" in str(err.value)
    assert "line 4" in str(err.value)


def test_shard_counts_follow_the_input_unless_set():
    out = load_config().output
    assert [out.kept_shards(n) for n in (0, 100_000, 100_001, 1_000_000)] == [4, 4, 5, 40]
    assert [out.rejects_shards(n) for n in (0, 25_000, 25_001, 1_000_000)] == [1, 1, 2, 40]
    fixed = out.model_copy(update={"num_shards": 7, "reject_shards": 3})
    assert (fixed.kept_shards(10**9), fixed.rejects_shards(10**9)) == (7, 3)


@pytest.mark.parametrize(
    "options,cli,message",
    [
        (
            {"runnr": "DirectRunner"},
            [],
            "config key runner.options.runnr: --runnr=DirectRunner: not a Beam pipeline option (did you mean --runner?)",
        ),
        (
            {"direct_num_workers": "abc"},
            [],
            "config key runner.options.direct_num_workers: argument --direct_num_workers: invalid int value: 'abc'",
        ),
        (
            {},
            ["--direct_num_worker=2"],
            "command line: --direct_num_worker=2: not a Beam pipeline option (did you mean --direct_num_workers?)",
        ),
        ({}, ["--runner=NopeRunner"], "--runner=NopeRunner: not a Beam runner"),
        ({}, ["--direct_running_mode=fast"], "argument --direct_running_mode: invalid choice: 'fast'"),
    ],
)
def test_beam_options_beam_would_ignore_or_fail_on_late_are_refused_naming_them(options, cli, message):
    """Beam only logs an unknown option and goes on without it; a bad value or runner fails
    once the pipeline is built, as a traceback."""
    from curate.pipelines import build

    cfg = config_from_dict({"runner": {"options": options}})
    with pytest.raises(ConfigError) as err:
        build.check_runner_options(cfg, cli)
    assert message in str(err.value)


def test_beam_options_of_every_shipped_runner_pass_the_check():
    from curate.pipelines import build

    cfg = load_config()
    build.check_runner_options(
        cfg, ["--runner=DirectRunner", "--direct_num_workers", "2", "--flink_master=localhost:8081"]
    )
    build.check_runner_options(cfg, ["--runner=curate.pipelines.beam.dask_runner.DaskRunner", "--dask_npartitions=4"])


def test_workers_without_a_mode_run_as_worker_processes_and_say_so():
    """Beam's default mode runs one in-process worker whatever --direct_num_workers says."""
    from curate.pipelines import build

    cfg = load_config()
    assert "--direct_running_mode=multi_processing" in build.pipeline_args(cfg, ["--direct_num_workers=2"], 10)
    execution = build.execution_of(cfg, ["--direct_num_workers=2"], 10)
    assert (execution["mode"], execution["workers"]) == ("worker processes", 2)
    pinned = build.execution_of(cfg, ["--direct_running_mode=in_memory", "--direct_num_workers=2"], 10)
    assert (pinned["mode"], pinned["workers"]) == ("in-process", 1)
    assert "--direct_running_mode=multi_processing" not in build.pipeline_args(cfg, ["--direct_num_workers=1"], 10)


def test_input_sources_say_what_they_did_not_do(tmp_path):
    """A glob matching no input file does not fail the run as if --input were wrong; unmatched
    files and an input with its own source column are warned about, naming input.sources."""
    import pyarrow as pa

    from curate.pipelines import build

    a, b = tmp_path / "tut-1.parquet", tmp_path / "other.parquet"
    for path in (a, b):
        path.write_bytes(b"")
    cfg = config_from_dict({"input": {"sources": {"/nowhere/*.parquet": "web", str(tmp_path / "tut-*"): "tutorial"}}})
    paths = [str(a), str(b)]
    matches = build.source_matches(cfg, paths)
    source_of = build.source_by_path(cfg, paths, matches)
    assert source_of == {str(a): "tutorial"} == build.source_by_path(cfg, paths)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    notes = build.source_notes(cfg, paths, schema, matches)
    assert notes[0] == "warning: input.sources: '/nowhere/*.parquet' match no input file"
    assert notes[1].startswith("warning: 1 input file(s) match no input.sources glob") and str(b) in notes[1]
    own = build.source_notes(cfg, paths, schema.append(pa.field("source", pa.string())), matches)
    assert own == ["warning: input.sources is ignored: the input files have a 'source' column of their own"]
