"""Assemble the stages from a config into one Beam pipeline, run it, publish.

Output layout of a finished run (``OUTPUT``):
  kept/part-SSSSS-of-NNNNN.parquet        documents that passed every stage
  rejects/<stage>/part-*.parquet          documents each stage dropped, with stage and reason
  funnel.json, funnel.md                  the funnel (deterministic: no timestamps)
  run.json                                when, where and with what the run happened
  _SUCCESS                                written last

The pipeline writes into ``OUTPUT/_tmp-<run id>/``; only after it finished and
the conservation check passed are the files moved into place, so a killed run
never leaves output that looks complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import multiprocessing
import os
import re
import shutil
import time
import uuid
from importlib import resources

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

import curate
from curate.pipelines import beam as beam_patches
from curate.pipelines import funnel as funnel_mod
from curate.pipelines import report as report_mod
from curate.pipelines.beam import local_runner
from curate.pipelines.beam import options as beam_options
from curate.pipelines.config import Config, ConfigError, config_to_dict
from curate.pipelines.output_lock import LOCK_FILE, OutputLock, check_output_path
from curate.pipelines.progress import LiveProgress
from curate.transforms import registry, spill
from curate.transforms.io import (
    InputError,
    ReadParquetShards,
    WriteParquetShards,
    expand_inputs,
    inspect_inputs,
    open_parquet,
    write_json,
)
from curate.transforms.stage import (
    IN,
    KEPT,
    KEPT_BY_GROUP,
    REJECTED,
    REPEATS,
    Columns,
    CountDocs,
    Rebatch,
    SampleRejects,
    sum_pairs,
)

TMP_PREFIX = "_tmp-"
STATS_FILE = "_stats.json"
WRITTEN_FILE = "_written.json"
SAMPLES_FILE = "samples.json"  # written by the pipeline (SampleRejects), published as is


class OutputExistsError(Exception):
    pass


def sample_corpus_path() -> str:
    return str(resources.files("curate.sample").joinpath("sample.parquet"))


def make_stages(cfg: Config, columns: Columns, schema, staging: str = "", input_rows: int = 0):
    """The configured stages in the registry's order; each checks its files on the driver.

    ``input_rows`` sizes the dedup shuffles (partitions) when the config leaves them null."""
    ctx = registry.BuildContext(
        columns=columns,
        input_rows=input_rows,
        staging=staging,
        tokens_per_char=cfg.tokens_per_char,
    )
    stages = []
    for spec in registry.specs(cfg.order):
        stage_cfg = spec.config() if spec.always else cfg.stages.__dict__[spec.key]
        if spec.always or stage_cfg.enabled:
            stages += spec.build(stage_cfg, ctx)
    for stage in stages:
        stage.check()
        schema = stage.output_schema(schema)  # raises ColumnClashError before anything runs
    return stages


def chain_schema(stages, schema: pa.Schema) -> pa.Schema:
    """The schema of what the last of ``stages`` keeps, from the schema the first reads."""
    for stage in stages:
        schema = stage.output_schema(schema)
    return schema


def stage_notes(cfg: Config) -> list[str]:
    """What each enabled stage's config warrants telling the user before the run (its spec's ``notes``)."""
    notes = []
    for spec in registry.specs(cfg.order):
        stage_cfg = None if spec.always else cfg.stages.__dict__[spec.key]
        if spec.notes is not None and stage_cfg is not None and stage_cfg.enabled:
            notes += spec.notes(stage_cfg)
    return notes


def check_stages(cfg: Config) -> None:
    """The driver-side checks of every configured stage (models, benchmark files, language codes)
    without input: ``curate config check``.  A run makes the same checks on its real schema."""
    columns = Columns(id=cfg.input.id_column, text=cfg.input.text_column)
    schema = pa.schema(
        [(columns.id, pa.string()), (columns.text, pa.string()), (cfg.stages.mixing.source_column, pa.string())]
    )
    make_stages(cfg, columns, schema)


def check_runner_options(cfg: Config, cli_args: list[str] | None = None) -> None:
    """Refuse Beam options Beam would ignore with a warning (unknown, misspelled) or fail on
    only once the pipeline is built (a value of the wrong type, an unknown runner): each of
    the config's ``runner.options`` alone, so the error names its key, then the command line's."""
    for key in cfg.runner.options:
        for problem in beam_options.check(cfg.runner.as_args(only=key)):
            raise ConfigError(f"config key runner.options.{key}: {problem}")
    for problem in beam_options.check(list(cli_args or [])):
        raise ConfigError(f"Beam option on the command line: {problem}")


def source_matches(cfg: Config, paths: list[str]) -> dict[str, set[str]]:
    """Per ``input.sources`` glob, the input files it matches: by their path as given, or as
    the glob expands (a relative glob from the working directory)."""
    import fnmatch

    matches = {}
    for pattern in cfg.input.sources:
        try:
            expanded = set(expand_inputs([pattern]))
        except InputError:  # matches no file as it expands; it may still match a path as given
            expanded = set()
        matches[pattern] = {p for p in paths if fnmatch.fnmatch(p, pattern) or p in expanded}
    return matches


def source_by_path(cfg: Config, paths: list[str], matches: dict[str, set[str]] | None = None) -> dict:
    """input.sources maps globs to source names; each shard takes the first glob matching it
    (``matches``: ``source_matches``' answer, when the caller has it)."""
    matches = source_matches(cfg, paths) if matches is None else matches
    out = {}
    for path in paths:
        for pattern, name in cfg.input.sources.items():
            if path in matches[pattern]:
                out[path] = name
                break
    return out


def source_notes(cfg: Config, paths: list[str], schema: pa.Schema, matches: dict[str, set[str]]) -> list[str]:
    """What ``input.sources`` did not do, said before the run: ignored because the input has a
    source column; globs that match no input file; input files no glob matches (null source)."""
    if not cfg.input.sources:
        return []
    column = cfg.stages.mixing.source_column
    if column in schema.names:
        return [f"warning: input.sources is ignored: the input files have a {column!r} column of their own"]
    notes = []
    unused = [pattern for pattern, files in matches.items() if not files]
    if unused:
        notes.append(f"warning: input.sources: {', '.join(map(repr, unused))} match no input file")
    matched = set().union(*matches.values())
    unmatched = [p for p in paths if p not in matched]
    if unmatched:
        shown = ", ".join(unmatched[:3]) + (f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else "")
        notes.append(
            f"warning: {len(unmatched)} input file(s) match no input.sources glob ({shown}): their documents have "
            f"a null {column!r} (mixing counts them as 'other')"
        )
    return notes


def _read_json(path: str):
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return json.loads(handle.read().decode("utf-8"))


def input_schema(cfg: Config, source_of: dict, schema: pa.Schema) -> pa.Schema:
    """The schema batches have once read: the shards' plus a ``source`` column from ``input.sources``
    (``source_of``: ``source_by_path``'s answer)."""
    if source_of and cfg.stages.mixing.source_column not in schema.names:
        schema = schema.append(pa.field(cfg.stages.mixing.source_column, pa.string()))
    return schema


def build_pipeline(
    p: beam.Pipeline,
    cfg: Config,
    paths: list[str],
    schema,
    staging: str,
    input_rows: int = 0,
    stages=None,
    source_of: dict | None = None,
) -> list[tuple[str, str]]:
    """Add the whole curation graph to ``p``; returns (slot, name) of the stages run.

    ``stages`` are ``make_stages``' result and ``source_of`` ``source_by_path``'s when the
    caller has them already."""
    columns = Columns(id=cfg.input.id_column, text=cfg.input.text_column)
    source_of = source_by_path(cfg, paths) if source_of is None else source_of
    schema = input_schema(cfg, source_of, schema)
    batches = p | "ReadShards" >> ReadParquetShards(
        paths, schema, cfg.input.batch_size, source_of, cfg.stages.mixing.source_column
    )
    stats = []
    written = []
    rejected = []
    # a stage's input is the PCollection the previous stage kept: counted once, under both keys
    current, current_keys = batches, [("raw", KEPT)]
    ran = []
    if stages is None:
        stages = make_stages(cfg, columns, schema, staging, input_rows)
    live = staging if "://" not in staging else None  # live console counts: local staging only
    for stage in stages:
        result = current | stage
        kept_once, repeat_column = result.kept, stage.repeat_column
        if repeat_column:  # a repeated document counts once as kept, its copies as repeats
            kept_once = result.kept | f"FirstCopy[{stage.name}]" >> beam.Map(
                lambda b, c=repeat_column: b.filter(pc.equal(b.column(c), 0))
            )
            repeats = result.kept | f"Repeats[{stage.name}]" >> beam.Map(
                lambda b, c=repeat_column: b.filter(pc.greater(b.column(c), 0))
            )
            stats.append(repeats | CountDocs(stage.name, REPEATS, columns.text))
            stats.append(kept_once | CountDocs(stage.name, KEPT, columns.text, progress_dir=live))
        stats += [
            current | CountDocs(stage.name, IN, columns.text, also=current_keys, progress_dir=live),
            result.rejected | CountDocs(stage.name, REJECTED, columns.text),
        ]
        if result.routed is not None:  # leaves the stage too; counted apart, not flattened with the rejects:
            # the FnApiRunner materializes every input of a Flatten (the routed batches: ~35k documents per 100k)
            stats.append(result.routed | f"CountRouted[{stage.name}]" >> CountDocs(stage.name, REJECTED, columns.text))
        rejected.append(result.rejected)
        written.append(
            result.rejected
            | f"WriteRejects[{stage.name}]"
            >> WriteParquetShards(
                FileSystems.join(staging, "rejects", stage.folder),
                stage.reject_schema(schema),
                cfg.output.rejects_shards(input_rows),
                columns,
                _compression(cfg),
            )
            | f"Label[{stage.name}]" >> beam.Map(lambda w, folder=stage.folder: (f"rejects/{folder}", w.rows))
        )
        if result.routed is not None:
            written.append(
                result.routed
                | f"WriteRouted[{stage.name}]"
                >> WriteParquetShards(
                    FileSystems.join(staging, "by_language"),
                    stage.reject_schema(schema),
                    cfg.output.rejects_shards(input_rows),
                    columns,
                    _compression(cfg),
                    partition_column=stage.group_column,
                )
                | f"LabelRouted[{stage.name}]" >> beam.Map(lambda w, name=stage.name: (f"routed/{name}", w.rows))
            )
        if stage.cuts is not None:
            written.append(
                stage.cuts
                | f"CutBatches[{stage.name}]" >> Rebatch(stage.cut_schema, cfg.input.batch_size)
                | f"WriteCuts[{stage.name}]"
                >> WriteParquetShards(
                    FileSystems.join(staging, "cuts", stage.name),
                    stage.cut_schema,
                    1,
                    Columns(id="id", text="cut_text"),
                    _compression(cfg),
                )
                | f"LabelCuts[{stage.name}]" >> beam.Map(lambda w, name=stage.name: (f"cuts/{name}", w.rows))
            )
        if result.extra_stats is not None:
            stats.append(result.extra_stats)
        if stage.group_column:
            stats.append(result.kept | CountDocs(stage.name, KEPT_BY_GROUP, columns.text, stage.group_column))
        schema = stage.output_schema(schema)
        current, current_keys = result.kept, ([] if repeat_column else [(stage.name, KEPT)])
        ran.append((stage.slot, stage.name))
    if current_keys:  # the last stage's kept output, which no stage reads
        stats.append(current | CountDocs(*current_keys[0], columns.text, also=current_keys[1:], progress_dir=live))
    written.append(
        current
        | "WriteKept"
        >> WriteParquetShards(
            FileSystems.join(staging, "kept"),
            schema,
            cfg.output.kept_shards(input_rows),
            columns,
            _compression(cfg),
            partition_column=next((s.kept_partition_column for s in reversed(stages) if s.kept_partition_column), None),
        )
        | "LabelKept" >> beam.Map(lambda w: ("kept", w.rows))
    )
    stats_path = FileSystems.join(staging, STATS_FILE)
    written_path = FileSystems.join(staging, WRITTEN_FILE)
    stats_done = (
        stats
        | "FlattenStats" >> beam.Flatten()
        | "SumStats" >> beam.CombinePerKey(sum_pairs)
        | "StatRows" >> beam.MapTuple(lambda k, v: [*k, *v])
        | "AllStats" >> beam.combiners.ToList()
        | "WriteStats" >> beam.Map(lambda rows: write_json(stats_path, sorted(rows)) or "stats")
    )
    written_done = (
        written
        | "FlattenWritten" >> beam.Flatten()
        | "SumWritten" >> beam.CombinePerKey(sum)
        | "AllWritten" >> beam.combiners.ToDict()
        | "WriteWritten" >> beam.Map(lambda d: write_json(written_path, d) or "written")
    )
    samples_path = FileSystems.join(staging, SAMPLES_FILE)
    samples_done = (
        tuple(rejected)  # input_check always runs
        | "SampleRejects" >> SampleRejects(columns.id, columns.text)
        | "WriteSamples" >> beam.Map(lambda samples: _write_text(samples_path, funnel_mod.dumps(samples)) or "samples")
    )
    # One terminal node that depends on every sink: Beam's DaskRunner computes
    # only the last transform's graph, so every write must lead into it.
    (stats_done, written_done, samples_done) | "Sinks" >> beam.Flatten() | "Done" >> beam.combiners.Count.Globally()
    return ran


def _compression(cfg: Config) -> str:
    return "NONE" if cfg.output.compression == "none" else cfg.output.compression


def _listing(directory: str) -> list[str]:
    try:
        return [m.path for r in FileSystems.match([FileSystems.join(directory, "**")]) for m in r.metadata_list]
    except Exception:
        return []


def prepare_output(output: str, overwrite: bool) -> None:
    """Refuse a non-empty output unless ``overwrite``; staging of dead runs and the lock do not count."""
    existing = [
        p
        for p in _listing(output)
        if f"/{TMP_PREFIX}" not in p.replace(os.sep, "/") and os.path.basename(p) != LOCK_FILE
    ]
    if existing and not overwrite:
        raise OutputExistsError(
            f"output {output} exists and is not empty ({len(existing)} files); "
            "pass --overwrite to replace it or choose another --output"
        )


PUBLISHED_DIRS = ("kept", "rejects", "by_language", "cuts")
RUN_FILES = (
    "funnel.json",
    "funnel.md",
    "run.json",
    "contamination.json",
    "mixture.json",
    "samples.json",
    "report.html",
    "_SUCCESS",
)


def staged_files(staging: str) -> list[str]:
    """Every file of a finished staging folder that is published (the pipeline's own bookkeeping is not)."""
    return sorted(p for p in _listing(staging) if not os.path.basename(p).startswith("_"))


def published_rows(files: list[str], staging: str, routed_stage: str | None) -> dict[str, int]:
    """Rows per published folder, from the Parquet footers of ``files``: ``kept``,
    ``rejects/<stage>``, ``routed/<stage>`` (``by_language/``).  Cut spans are not documents."""
    prefix = staging.rstrip("/") + "/"
    rows: dict[str, int] = {}
    for path in files:
        rel = path.replace(os.sep, "/")[len(prefix) :] if path.startswith(prefix) else path
        top, _, rest = rel.partition("/")
        if not rel.endswith(".parquet") or top == "cuts":
            continue
        if top == "kept":
            label = "kept"
        elif top == "rejects":
            label = "rejects/" + rest.split("/", 1)[0]
        elif top == "by_language":
            label = f"routed/{routed_stage}"
        else:
            continue
        rows[label] = rows.get(label, 0) + open_parquet(path).metadata.num_rows
    return rows


def publish(staging: str, output: str, files: list[str]) -> None:
    """Move ``files`` (staged, counted) into ``output``, replacing an earlier run's, then drop staging."""
    for sub in PUBLISHED_DIRS:
        old = [p for p in _listing(FileSystems.join(output, sub))]
        if old:
            FileSystems.delete(old)
    for name in RUN_FILES:
        path = FileSystems.join(output, name)
        if FileSystems.exists(path):
            FileSystems.delete([path])
    prefix = staging.rstrip("/")
    targets = [output.rstrip("/") + p[len(prefix) :] for p in files]
    for target in targets:
        if "://" not in target:  # local renames need the parent folder
            os.makedirs(os.path.dirname(target), exist_ok=True)
    if files:
        FileSystems.rename(files, targets)
    FileSystems.delete([staging])


def clean_stale_staging(output: str, keep: str) -> None:
    """Remove staging folders of dead runs.

    Called only while this run holds the output's lock: a live run would hold
    it, so every other staging folder belongs to a run that is gone."""
    marker = re.compile(r"^(.*/" + re.escape(TMP_PREFIX) + r"[^/]+)/")
    keep = keep.replace(os.sep, "/").rstrip("/")
    stale = {m.group(1) for p in _listing(output) if (m := marker.match(p.replace(os.sep, "/")))}
    if "://" not in output and os.path.isdir(output):  # a local staging folder left empty lists no file
        stale |= {
            FileSystems.join(output, e.name).replace(os.sep, "/")
            for e in os.scandir(output)
            if e.is_dir() and e.name.startswith(TMP_PREFIX)
        }
    stale = sorted(stale - {keep})
    if stale:
        FileSystems.delete(stale)


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _direct(args: list[str]) -> bool:
    runners = _flag_values(args, "--runner")
    return not runners or runners[-1].rsplit(".", 1)[-1].lower() in local_runner.DIRECT_NAMES


def _auto_mode(args: list[str]) -> bool:
    """True when curate picks the DirectRunner's mode: the DirectRunner (by default or by
    name) and no ``--direct_running_mode``/``--direct_num_workers`` given."""
    return _direct(args) and not any(a.startswith(("--direct_num_workers", "--direct_running_mode")) for a in args)


def pipeline_args(cfg: Config, cli_args: list[str], input_rows: int) -> list[str]:
    """Beam options: the config's runner options, then the command line's (later wins).

    On the DirectRunner with no mode given, and at least ``runner.multiprocess_min_rows``
    input rows on a machine with 2 or more usable cores, the run uses multi-processing
    mode with one worker process per core; below that, one in-process worker.
    """
    args = beam_patches.worker_options(cfg.runner.as_args() + list(cli_args))
    if _auto_mode(args):
        if usable_cores() >= 2 and input_rows >= cfg.runner.multiprocess_min_rows:
            args += ["--direct_running_mode=multi_processing", f"--direct_num_workers={usable_cores()}"]
        else:
            args += ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    elif _workers_without_mode(args):
        # Beam's default mode runs one in-process worker whatever the count (with a warning);
        # a user who asks for N workers means N worker processes
        args += ["--direct_running_mode=multi_processing"]
    return args


def _flag_values(args: list[str], flag: str) -> list[str]:
    return [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]


def _workers_without_mode(args: list[str]) -> bool:
    """The DirectRunner with ``--direct_num_workers`` other than 1 and no ``--direct_running_mode``."""
    workers = _flag_values(args, "--direct_num_workers")
    return (
        _direct(args)
        and not _flag_values(args, "--direct_running_mode")
        and bool(workers)
        and workers[-1].strip() != "1"
    )


def execution_of(cfg: Config, cli_args: list[str], input_rows: int) -> dict:
    """How the run executes and why, for ``run.json`` and the console: runner, mode, workers, reason."""
    given = beam_patches.worker_options(cfg.runner.as_args() + list(cli_args))
    args = pipeline_args(cfg, cli_args, input_rows)
    if not _direct(args):
        runner = _flag_values(args, "--runner")[-1]
        return {"runner": runner, "mode": "the runner's", "workers": None, "reason": "--runner given"}
    mode = _flag_values(args, "--direct_running_mode")
    workers = _flag_values(args, "--direct_num_workers")
    mode = mode[-1] if mode else "in_memory"
    workers = int(workers[-1]) if workers else 1
    if mode == "in_memory":
        workers = 1  # Beam runs one in-process worker in this mode, whatever the count
    elif workers == 0:
        workers = multiprocessing.cpu_count()  # what Beam's FnApiRunner takes 0 to mean
    threshold, cores = cfg.runner.multiprocess_min_rows, usable_cores()
    if _workers_without_mode(given):
        reason = "--direct_num_workers given without --direct_running_mode: worker processes"
    elif not _auto_mode(given):
        reason = "--direct_running_mode/--direct_num_workers given"
    elif mode == "multi_processing":
        reason = (
            f"{input_rows:,} input rows >= runner.multiprocess_min_rows ({threshold:,}) and {cores} usable cores: "
            "one worker process per core"
        )
    elif cores < 2:
        reason = f"{cores} usable core: one in-process worker"
    else:
        reason = (
            f"{input_rows:,} input rows < runner.multiprocess_min_rows ({threshold:,}): one in-process worker "
            "(below it, starting worker processes costs more than they save)"
        )
    label = {"in_memory": "in-process", "multi_processing": "worker processes"}.get(mode, mode)
    return {"runner": "DirectRunner", "mode": label, "workers": workers, "reason": reason}


@dataclasses.dataclass
class RunResult:
    output: str
    funnel: dict
    seconds: float


class PipelineFailed(Exception):
    pass


_READ_FAILURE = re.compile(r"(\S+: failed while reading \([^\n]*?\))")


def _run_pipeline(p: beam.Pipeline) -> None:
    """Run and wait; a shard that breaks mid-read becomes an InputError naming it."""
    beam_patches.install_on_driver()  # whatever built the pipeline: the runner's data stream needs the fix
    try:
        p.run().wait_until_finish()
    except Exception as exc:  # Beam wraps worker errors; find ours in the text
        text = str(exc)
        found = _READ_FAILURE.search(text)
        if found:
            raise InputError(found.group(1)) from exc
        last = [line for line in text.strip().splitlines() if line.strip()][-1:] or [type(exc).__name__]
        raise PipelineFailed(f"the pipeline failed: {last[0][:500]}") from exc


def before_publish(staging: str) -> None:
    """Test hook: the staged output is complete and about to be counted and published.

    With ``CURATE_TEST_PAUSE_BEFORE_PUBLISH=DIR`` the run writes ``DIR/staged``
    (its staging path) and waits for ``DIR/go``, so a test can act on a run
    that is provably mid-flight (a second run into the same output, a deleted
    shard) without sleeping and hoping."""
    pause = os.environ.get("CURATE_TEST_PAUSE_BEFORE_PUBLISH")
    if not pause:
        return
    with open(os.path.join(pause, "staged.tmp"), "w") as handle:
        handle.write(staging)
    os.replace(os.path.join(pause, "staged.tmp"), os.path.join(pause, "staged"))
    deadline = time.monotonic() + 600
    while not os.path.exists(os.path.join(pause, "go")):
        if time.monotonic() > deadline:
            raise PipelineFailed("test hook: gave up waiting for the go file")
        time.sleep(0.05)


def publish_stage_files(funnel: dict, staging: str) -> None:
    """Each run stage's ``publish`` hook: files of its own (mixture.json ...) and top-level funnel keys."""

    def read(name):
        path = FileSystems.join(staging, name)
        return _read_json(path) if FileSystems.exists(path) else None

    def write(name, payload):
        _write_text(FileSystems.join(staging, name), funnel_mod.dumps(payload))

    for spec in registry.specs():
        if spec.publish is None:
            continue
        slots = dict(spec.slots)
        for entry in funnel["stages"]:
            if entry["status"] == "run" and entry["slot"] in slots:
                spec.publish(entry, funnel, read, write)


def write_empty_kept(staging: str, schema: pa.Schema, compression: str) -> None:
    """An empty, schema-correct ``kept/`` shard when nothing was kept: readers of
    ``OUTPUT/kept/*.parquet`` find the folder and the columns either way.  Named one of one:
    it is the only file, and ``-of-00004`` would say three are missing."""
    kept = FileSystems.join(staging, "kept")
    if any(p.endswith(".parquet") for p in _listing(kept)):
        return
    path = FileSystems.join(kept, "part-00000-of-00001.parquet")
    if "://" not in path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        pq.write_table(schema.empty_table(), handle, compression=compression)


def run(
    cfg: Config,
    output: str,
    input_paths: list[str] | None = None,
    overwrite: bool = False,
    beam_args: list[str] | None = None,
    log=print,
    skip_bad_shards: bool = False,
    config_files: list[str] | None = None,
    live=None,
) -> RunResult:
    """Validate inputs, run the pipeline, check conservation, publish.  Raises on failure.

    Everything that can be known before the run is checked before it: the
    output path, every input footer, every stage's models, benchmark files and
    settings.  Then the run takes the output's lock (``output_lock``) and holds
    it until it has published.  ``live``: a stream for the live progress view
    (``pipelines/progress.py``), None for none."""
    started = time.time()
    beam_patches.install_on_driver()  # before the graph is built: the fallback coder is chosen then
    columns = Columns(id=cfg.input.id_column, text=cfg.input.text_column)
    check_runner_options(cfg, beam_args)
    check_output_path(output)
    patterns = input_paths or cfg.input.paths or [sample_corpus_path()]
    paths = expand_inputs(patterns)
    skipped: list | None = [] if skip_bad_shards else None
    schema, input_rows = inspect_inputs(paths, columns, skipped)
    if skipped:
        bad = {path for path, _ in skipped}
        paths = [p for p in paths if p not in bad]
        for path, reason in skipped:
            log(f"[curate] skipped bad shard: {reason}")
    run_id = uuid.uuid4().hex[:12]
    staging = FileSystems.join(output, TMP_PREFIX + run_id)
    matches = source_matches(cfg, paths)  # input.sources globs listed once
    source_of = source_by_path(cfg, paths, matches)
    read_schema = input_schema(cfg, source_of, schema)
    for note in source_notes(cfg, paths, schema, matches):
        log(f"[curate] {note}")
    stages = make_stages(cfg, columns, read_schema, staging, input_rows)
    for note in stage_notes(cfg):
        log(f"[curate] {note}")

    with OutputLock(output, staging, run_id):
        prepare_output(output, overwrite)
        clean_stale_staging(output, keep=staging)
        log(f"[curate] {len(paths)} input file(s), {input_rows:,} rows -> {output}")

        execution = execution_of(cfg, beam_args or [], input_rows)
        log(
            f"[curate] {execution['runner']}, {execution['mode']}"
            + (f", {execution['workers']} worker(s)" if execution["workers"] else "")
            + f": {execution['reason']}"
        )
        beam_args = pipeline_args(cfg, beam_args or [], input_rows)
        options = PipelineOptions(beam_args)
        p = beam.Pipeline(runner=local_runner.runner_for(options), options=options)
        try:
            ran = build_pipeline(p, cfg, paths, schema, staging, input_rows, stages=stages, source_of=source_of)
        except BaseException:
            shutil.rmtree(p.local_tempdir, ignore_errors=True)  # Beam removes it only when the pipeline runs
            raise
        view = LiveProgress(
            staging if live is not None and "://" not in staging else None,
            input_rows,
            [name for _, name in ran],
            stream=live,
        )
        # batches cross the local runner's fusion breaks as file references (transforms/spill.py);
        # CURATE_NO_SPILL=1 keeps them inline, to measure what that is worth (benchmarks/scaleout_profile.py)
        spill_parent = staging if "://" not in staging else None
        local = isinstance(p.runner, local_runner.LocalRunner) and not os.environ.get("CURATE_NO_SPILL")
        with view, spill.spilling(spill_parent) if local else contextlib.nullcontext():
            _run_pipeline(p)
        write_empty_kept(staging, chain_schema(stages, read_schema), _compression(cfg))
        before_publish(staging)

        stats = _read_json(FileSystems.join(staging, STATS_FILE))
        written_path = FileSystems.join(staging, WRITTEN_FILE)
        pipeline_written = _read_json(written_path) if FileSystems.exists(written_path) else {}
        # conservation counts what is about to be published: the footers of these very files
        files = staged_files(staging)
        routed_stage = next((s.name for s in stages if s.route), None)
        written = published_rows(files, staging, routed_stage)
        funnel = funnel_mod.build_funnel(
            stats,
            ran,
            cfg.tokens_per_char,
            written=written,
            input_rows=input_rows,
            pipeline_written=pipeline_written,
            order=cfg.order,
        )
        funnel["skipped_shards"] = [{"path": path, "reason": reason} for path, reason in (skipped or [])]
        if not funnel["conservation"]["ok"]:
            raise ConservationError(
                "; ".join(funnel["conservation"]["problems"])
                + f" (nothing was published; staged output kept in {staging})"
            )
        if view.directory:
            view.finish(funnel)  # the totals, before any line below them
        publish_stage_files(funnel, staging)
        for warning in funnel.get("warnings", []):  # what a stage found the user must know (infeasible targets)
            log(f"[curate] warning: {warning}")
        _write_text(FileSystems.join(staging, "funnel.json"), funnel_mod.dumps(funnel))
        _write_text(FileSystems.join(staging, "funnel.md"), funnel_mod.render_markdown(funnel))
        samples = _read_json(FileSystems.join(staging, SAMPLES_FILE))
        report_mod.write_report(staging, funnel, samples)
        seconds = time.time() - started
        run_info = {
            "curate_version": curate.__version__,
            "run_id": run_id,
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "inputs": paths,
            "input_rows": input_rows,
            "beam_args": beam_args or [],
            "execution": execution,
            "config_files": list(config_files or []),
            "config": config_to_dict(cfg),
            "stages_run": [name for _, name in ran],
        }
        _write_text(FileSystems.join(staging, "run.json"), json.dumps(run_info, indent=2, sort_keys=True) + "\n")
        publish(staging, output, staged_files(staging))
        _write_text(FileSystems.join(output, "_SUCCESS"), "")
    return RunResult(output, funnel, seconds)


class ConservationError(Exception):
    pass


def _write_text(path: str, text: str):
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(text.encode("utf-8"))


def read_funnel(output: str) -> dict:
    return funnel_mod.read_run_json(output, "funnel.json")
