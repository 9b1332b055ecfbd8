"""Beam pipeline options checked before any work, with Beam's own parser.

Beam parses options late and leniently: an unknown or misspelled option
(``--direct_num_worker=2``) is only logged ("Unparseable argument ... Did you mean")
and the run goes ahead without it; a value of the wrong type
(``--direct_num_workers=abc``) or an unknown ``--runner`` fails with a traceback
once the pipeline is built.  ``check`` parses the options the way
``PipelineOptions.get_all_options`` does (every registered options class adds its
arguments to a ``_BeamArgumentParser``) and returns each problem as one line, so
``curate run`` and ``curate config check`` refuse them up front, naming the option.

Reads private names of apache-beam (``_BeamArgumentParser``, ``_add_argparse_args``:
the parser ``get_all_options`` builds), hence here, beside the other code tied to
one Beam version; on another version the check is skipped with a warning
(``tested_beam_or_skip``) and Beam's own late handling applies.
"""

from __future__ import annotations

import difflib


class _Refused(Exception):
    pass


def _parser(dask: bool):
    from apache_beam.options import pipeline_options as po

    if dask:  # the DaskRunner's options register when its module is imported (dask: ~0.2 s, so only then)
        try:
            import apache_beam.runners.dask.dask_runner  # noqa: F401
        except ImportError:  # no dask installed: its runner cannot run either
            pass

    class Parser(po._BeamArgumentParser):
        def error(self, message):  # argparse would print usage and exit
            raise _Refused(message)

    parser = Parser(allow_abbrev=False)
    classes: dict[str, type] = {}
    for cls in po.PipelineOptions.__subclasses__():  # as get_all_options: the first of each name
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    return parser


def _runner_problem(name: str) -> str | None:
    from apache_beam.options.pipeline_options import StandardOptions

    if "." in name:  # a class path: imported by Beam when the pipeline is built
        return None
    known = {path.rsplit(".", 1)[-1].lower() for path in StandardOptions.ALL_KNOWN_RUNNERS}
    if name.lower() in known or name.lower() + "runner" in known:
        return None
    return (
        f"--runner={name}: not a Beam runner (runners: {', '.join(StandardOptions.KNOWN_RUNNER_NAMES)}, "
        "or the full class path of a PipelineRunner)"
    )


def check(args: list[str]) -> list[str]:
    """One line per problem with ``args`` (Beam's ``--key=value`` options); empty when Beam
    would take them all."""
    from curate.pipelines.beam import tested_beam_or_skip

    if not args or not tested_beam_or_skip("options"):
        return []
    parser = _parser(dask=any("dask" in arg.lower() for arg in args))
    try:
        known, unknown = parser.parse_known_args(args)
    except _Refused as exc:
        return [str(exc)]
    problems = []
    options = [s for action in parser._actions for s in action.option_strings]
    for arg in unknown:
        if not arg.startswith("-"):
            continue  # the value of an unknown option given as two words: its option is named
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name, options, n=1)
        problems.append(f"{arg}: not a Beam pipeline option" + (f" (did you mean {close[0]}?)" if close else ""))
    runner = getattr(known, "runner", None)
    if isinstance(runner, str) and (problem := _runner_problem(runner)):
        problems.append(problem)
    return problems
