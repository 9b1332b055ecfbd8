"""The ``curate`` command.

  curate run [--config FILE ...] [--input GLOB|DIR ...] [--output DIR] [--overwrite] [BEAM OPTIONS...]
  curate config show [--config FILE ...]
  curate config check FILE [FILE ...]
  curate funnel DIR
  curate job-service [--port N] [--worker-pool-port N]

Unknown options after ``run`` are passed to Beam as pipeline options
(``--runner``, ``--direct_num_workers``, ``--project`` ...).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

EXIT_USAGE = 2

EXIT_CODES = """exit codes:
  0  the run finished and published its output (or the command did what it says)
  1  the run failed after it started (a worker error, a failed conservation check); nothing was published
  2  a usage or input problem found before any work: a bad option, config key, input shard, output path,
     model or benchmark file, or an output folder another run holds; the message names it"""

READ_RUN_EXIT_CODES = """exit codes:
  0  done
  2  the folder has no funnel.json (it is not a run's output), or one of its JSON files is damaged;
     the message names it"""

TRAIN_EXIT_CODES = """exit codes:
  0  the model folder was written
  2  a problem found before training: --data missing or not Parquet, a column missing or of the wrong type,
     too few rows of a class, or --out a file or a non-empty folder without --overwrite; the message names it"""

CONFIG_EXIT_CODES = """exit codes:
  0  every config is valid (show: printed)
  2  a config problem: a file, key, value, model, benchmark file or language code; the message names it"""

SERVICE_EXIT_CODES = """exit codes:
  0  stopped with Ctrl-C (another signal: that signal's status, e.g. 143 for SIGTERM)
  2  a bad option, or the service could not start"""

RUNNERS = """runners (--runner, or runner.options in a config; see configs/*.yaml):
  (none)          the DirectRunner: one in-process worker below runner.multiprocess_min_rows input rows
                  (30,000), one worker process per core from there (run.json's 'execution' says which)
  --dask-workers N  a dask.distributed cluster of N worker processes on loopback, started and stopped by curate
  configs/dask.yaml      an existing Dask cluster          configs/portable.yaml  a Beam job service (Flink, Spark)
  configs/flink.yaml     a Flink cluster                   configs/dataflow.yaml  Google Cloud Dataflow"""


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="curate",
        formatter_class=formatter,
        description="Pretraining-data curation on Apache Beam: dedup, language ID, quality, decontamination and "
        "mixing, with a funnel of what was kept and why the rest was dropped.",
        epilog="examples:\n  curate run                                  # the bundled sample corpus into ./out\n"
        "  curate run --input 'shards/*.parquet' --output out --config my_recipe.yaml\n"
        "  curate funnel out                           # the funnel of a finished run\n\n" + EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        formatter_class=formatter,
        help="run the curation pipeline (default: the bundled sample corpus)",
        description="Run the curation pipeline: read Parquet shards, run the configured stages, publish kept/, "
        "rejects/<stage>/ (every dropped document with its stage and reason), the funnel and a report.\n\n"
        "Options curate does not know are passed to Beam as pipeline options (--runner, "
        "--direct_num_workers, --project ...); on the command line they win over runner.options of "
        "the config.",
        epilog="examples:\n"
        "  curate run                                   # the bundled sample corpus into ./out\n"
        "  curate run --input data/ --output out          # every *.parquet under data/\n"
        "  curate run --config configs/fineweb.yaml --input 'crawl/*.parquet' --output out\n"
        "  curate run --dask-workers 2 --input 'crawl/*.parquet' --output out\n"
        "  curate run --config configs/dataflow.yaml --input 'gs://b/crawl/*.parquet' --output gs://b/out "
        "--project p\n\n" + RUNNERS + "\n\n" + EXIT_CODES,
    )
    run.add_argument(
        "--config",
        action="append",
        help="YAML config layered over the packaged defaults; repeatable, later wins key by key",
    )
    run.add_argument(
        "--input",
        action="append",
        help="Parquet glob, file or folder (every *.parquet under it); repeatable (overrides input.paths)",
    )
    run.add_argument("--output", default="out", help="output folder or URL (default: ./out)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output")
    run.add_argument(
        "--skip-bad-shards",
        action="store_true",
        help="skip shards whose footer or schema is bad: not readable Parquet, columns missing (listed in the funnel); "
        "a shard that breaks in the middle of reading still stops the run",
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines on stderr (errors and the funnel still)")
    run.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of Beam's and the workers' logging (default WARNING; known-harmless warnings "
        "are dropped at WARNING)",
    )
    run.add_argument(
        "--dask-workers",
        type=int,
        metavar="N",
        help="start a dask.distributed cluster of N worker processes on loopback and run on it",
    )
    service = sub.add_parser(
        "job-service",
        formatter_class=formatter,
        epilog="example:\n  curate job-service --port 8099 --worker-pool-port 50000 &\n"
        "  curate run --config configs/portable.yaml --environment_type=EXTERNAL "
        "--environment_config=localhost:50000 --sdk_worker_parallelism=2\n\n" + SERVICE_EXIT_CODES,
        help="a local Beam job service (portable Job API) that runs each job on --sdk_worker_parallelism SDK workers",
    )
    service.add_argument("--port", type=int, default=8099, help="job API port (default 8099; 0 picks a free one)")
    service.add_argument(
        "--worker-pool-port",
        type=int,
        metavar="N",
        help="also start a pool of SDK worker processes on this port (0 picks a free one), "
        "for --environment_type=EXTERNAL --environment_config=localhost:N",
    )
    config = sub.add_parser(
        "config",
        formatter_class=formatter,
        help="show the merged config, or check config files without running",
        epilog="examples:\n  curate config show --config configs/portable.yaml --config my.yaml\n"
        "  curate config check my.yaml\n\n" + EXIT_CODES,
    )
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser(
        "show",
        formatter_class=formatter,
        help="print the validated config: the defaults with each --config layered over",
        epilog=CONFIG_EXIT_CODES,
    )
    show.add_argument("--config", action="append", help="YAML config layered over the defaults; repeatable")
    check = config_sub.add_parser(
        "check",
        formatter_class=formatter,
        epilog=CONFIG_EXIT_CODES,
        help="validate config files (each layered over the defaults) and their "
        "models, benchmark files and language codes, without running",
    )
    check.add_argument("files", nargs="+", help="YAML config files")
    funnel = sub.add_parser(
        "funnel",
        formatter_class=formatter,
        help="print the funnel table of a finished run",
        epilog="example:\n  curate funnel out\n\n" + READ_RUN_EXIT_CODES,
    )
    funnel.add_argument("output", help="output folder of a finished run")
    report = sub.add_parser(
        "report",
        formatter_class=formatter,
        help="regenerate report.html of a finished run from its JSON",
        epilog="example:\n  curate report out && xdg-open out/report.html\n\n" + READ_RUN_EXIT_CODES,
    )
    report.add_argument("output", help="output folder of a finished run")
    train = sub.add_parser(
        "train-quality",
        formatter_class=formatter,
        help="train an educational-quality model from labelled Parquet",
        epilog="example:\n  curate train-quality --data labelled.parquet --group-column book "
        "--out my_model\n  then set stages.quality.model_dir: my_model in a config\n\n" + TRAIN_EXIT_CODES,
    )
    train.add_argument("--data", required=True, help="Parquet file with a text and a 0/1 label column")
    train.add_argument("--text-column", default="text", help="column of the documents' text (string)")
    train.add_argument("--label-column", default="label", help="column of the labels: 1/true educational, 0/false not")
    train.add_argument("--model-type", default="ensemble", choices=["ensemble", "tfidf", "features"])
    train.add_argument("--holdout", type=float, default=0.2, help="held-out fraction for the report (default 0.2)")
    train.add_argument(
        "--group-column",
        help="column of a group per row (book, subject, source): evaluate by leaving "
        "one group out and report each fold's ROC AUC and the worst (instead of --holdout)",
    )
    train.add_argument(
        "--no-group-balance",
        action="store_true",
        help="with --group-column: weigh every row the same (default: every group weighs the same in total, "
        "so a large group does not decide the boundary for the small ones)",
    )
    train.add_argument("--out", required=True, help="folder to write model.json, weights.npz, MODEL_CARD.md")
    train.add_argument("--overwrite", action="store_true", help="replace what a non-empty --out folder holds")
    return parser


def _configure_logging(level_name: str) -> None:
    from curate.pipelines.beam import DropHarmless

    """Beam's and the workers' logs at ``level_name`` (WARNING by default), one prefix, harmless ones dropped."""
    level = getattr(logging, level_name)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[beam] %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(DropHarmless(level))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.lastResort.addFilter(DropHarmless(level))  # what Beam logs before this ran (imports)
    logging.getLogger("apache_beam").setLevel(level)


def _worker_log_level(beam_args: list[str], level_name: str) -> list[str]:
    """SDK workers log at the same level unless the Beam options say otherwise."""
    if any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        return beam_args
    return [*beam_args, f"--default_sdk_harness_log_level={level_name}"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("curate")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _error(message: str) -> int:
    print(f"curate: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _stray(beam_args: list[str]) -> list[str]:
    """Words among the options passed on to Beam that are no option's value: a bare word
    after another bare word or after ``--opt=value``, or anything that names Parquet
    input (``--input a.parquet b.parquet`` reads only a.parquet, and Beam drops
    what it cannot parse with a log line, so b.parquet would be silently left out)."""
    out = []
    for k, arg in enumerate(beam_args):
        if arg.startswith("-"):
            continue
        before = beam_args[k - 1] if k else ""
        takes_value = before.startswith("--") and "=" not in before
        if not takes_value or arg.endswith(".parquet") or any(ch in arg for ch in "*?["):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    if args.command != "run" and beam_args:
        return _error(f"unrecognized arguments: {' '.join(beam_args)}")
    stray = _stray(beam_args)
    if stray:
        return _error(
            f"unexpected argument(s) {' '.join(stray)}: give each input its own --input "
            "(--input a.parquet --input b.parquet), or one glob in quotes (--input 'shards/*.parquet')"
        )
    _configure_logging(getattr(args, "log_level", "WARNING"))

    from curate.classifiers.benchmark_sets import BenchmarkFormatError
    from curate.classifiers.langid import ModelFileError
    from curate.classifiers.quality import ModelFormatError
    from curate.pipelines import build, funnel
    from curate.pipelines.config import ConfigError, load_config
    from curate.pipelines.output_lock import OutputLocked, OutputNotWritable
    from curate.transforms.io import InputError
    from curate.transforms.stage import ColumnClashError

    if args.command == "train-quality":
        from curate.pipelines.train_quality import (
            TrainingDataError,
            check_model_output,
            grouped_summary,
            train_and_report,
            train_grouped,
        )

        if not 0.0 < args.holdout < 1.0:
            return _error("--holdout must be between 0 and 1")
        if args.no_group_balance and not args.group_column:
            return _error("--no-group-balance applies to --group-column training; give a --group-column")
        try:
            check_model_output(args.out, args.overwrite)
            if args.group_column:
                metrics = train_grouped(
                    args.data,
                    args.text_column,
                    args.label_column,
                    args.group_column,
                    args.model_type,
                    args.out,
                    balance_groups=not args.no_group_balance,
                )
            else:
                metrics = train_and_report(
                    args.data, args.text_column, args.label_column, args.model_type, args.out, args.holdout
                )
        except TrainingDataError as exc:
            return _error(str(exc))
        if args.group_column:
            print(grouped_summary(metrics, args.group_column, args.out))
            return 0
        print(f"held-out ROC AUC {metrics['roc_auc']:.4f} on {metrics['heldout_docs']} documents")
        for key in ("at_0.5", "at_0.8"):
            m = metrics[key]
            print(f"threshold {m['threshold']}: precision {m['precision']:.3f} recall {m['recall']:.3f}")
        print(f"model written to {args.out}")
        return 0

    if args.command == "report":
        from curate.pipelines.report import regenerate

        try:
            print(regenerate(args.output))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # RunOutputError names the file itself
            return _error(str(exc) if isinstance(exc, ValueError) else f"{args.output}: a damaged run output ({exc!r})")
        return 0

    if args.command == "funnel":
        try:
            print(funnel.render_markdown(build.read_funnel(args.output)))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # RunOutputError names the file itself
            return _error(
                str(exc) if isinstance(exc, ValueError) else f"{args.output}: a damaged funnel.json ({exc!r})"
            )
        return 0

    if args.command == "config":
        import yaml

        from curate.pipelines.config import config_to_dict

        files = (args.config or []) if args.config_command == "show" else args.files
        layers = [files] if args.config_command == "show" else [[f] for f in files]
        failed = 0
        for layer in layers:
            try:
                cfg = load_config(layer)
                build.check_stages(cfg)
                build.check_runner_options(cfg)
            except (ConfigError, ModelFileError, ModelFormatError, BenchmarkFormatError, ColumnClashError) as exc:
                message = str(exc)
                if layer and not message.startswith(layer[-1]):
                    message = f"{layer[-1]}: {message}"
                _error(message)
                failed += 1
                continue
            for note in build.stage_notes(cfg):  # what a run would warn about, said before it
                print(f"{layer[-1] if layer else 'defaults'}: {note}", file=sys.stderr)
            if args.config_command == "show":
                print(f"# defaults{''.join(' + ' + f for f in layer)}")
                print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
            else:
                print(f"{layer[0]}: ok")
        return EXIT_USAGE if failed else 0

    if args.command == "job-service":
        from curate.pipelines.beam import job_service

        try:
            return job_service.serve(
                args.port, args.worker_pool_port, log=lambda m: print(m, file=sys.stderr, flush=True)
            )
        except (OSError, RuntimeError) as exc:
            return _error(f"job service could not start: {exc}")

    if args.dask_workers is not None and args.dask_workers < 1:
        return _error("--dask-workers must be at least 1")
    try:
        cfg = load_config(args.config)
        with contextlib.ExitStack() as stack:
            if args.dask_workers:
                from curate.pipelines.beam.dask_runner import LocalDaskCluster

                beam_args = stack.enter_context(LocalDaskCluster(args.dask_workers)) + beam_args
            result = build.run(
                cfg,
                args.output,
                input_paths=args.input,
                overwrite=args.overwrite,
                beam_args=_worker_log_level(beam_args, args.log_level),
                log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True)),
                skip_bad_shards=args.skip_bad_shards,
                live=None if args.quiet else sys.stderr,
                config_files=args.config,
            )
    except (
        ConfigError,
        InputError,
        build.OutputExistsError,
        ColumnClashError,
        ModelFileError,
        ModelFormatError,
        BenchmarkFormatError,
        OutputLocked,
        OutputNotWritable,
    ) as exc:
        return _error(str(exc))
    except build.ConservationError as exc:
        print(f"curate: conservation check failed: {exc}", file=sys.stderr)
        return 1
    except build.PipelineFailed as exc:
        print(f"curate: {exc}", file=sys.stderr)
        return 1
    print(funnel.render_markdown(result.funnel))
    if not args.quiet:
        print(f"[curate] done in {result.seconds:.1f}s: kept and rejects written to {result.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
