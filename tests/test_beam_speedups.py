"""transforms.beam_speedups: the memoized DoFn introspection and options views give Beam's answers."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.pipeline import PipelineVisitor
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec
from conftest import keep_beam_tempdir_in

from curate.pipelines.beam import speedups as beam_speedups
from curate.pipelines.build import build_pipeline, sample_corpus_path
from curate.pipelines.config import load_config
from curate.transforms.io import inspect_inputs
from curate.transforms.stage import Columns

COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())
ALARM = TimerSpec("alarm", beam.TimeDomain.WATERMARK)


class Stateful(beam.DoFn):
    def process(self, element, count=beam.DoFn.StateParam(COUNT), alarm=beam.DoFn.TimerParam(ALARM)):
        yield element


class Plain(beam.DoFn):
    def process(self, element):
        yield element


class Duplicated(beam.DoFn):
    def process(self, element, a=beam.DoFn.StateParam(COUNT), b=beam.DoFn.StateParam(COUNT)):
        yield element


def test_installed_and_answers_like_beam_for_state_timers_and_wrapped_functions():
    beam_speedups.install()  # what a run's install_on_driver / a worker's plugin does
    assert userstate.get_dofn_specs is beam_speedups.get_dofn_specs
    for dofn in (Stateful(), Plain(), Stateful(), Plain()):  # second round from the memo
        assert beam_speedups.get_dofn_specs(dofn) == beam_speedups._ORIGINAL(dofn)
    assert beam_speedups.get_dofn_specs(Stateful()) == ({COUNT}, {ALARM})
    assert userstate.is_stateful_dofn(Stateful()) and not userstate.is_stateful_dofn(Plain())
    # a wrapped function sits on the instance: never answered from another wrapper's memo
    plain_fn = beam.transforms.core.CallableWrapperDoFn(lambda x: [x])
    stateful_fn = beam.transforms.core.CallableWrapperDoFn(lambda x, c=beam.DoFn.StateParam(COUNT): [x])
    for fn in (plain_fn, stateful_fn):
        assert beam_speedups.get_dofn_specs(fn) == beam_speedups._ORIGINAL(fn)
    assert (beam.transforms.core.CallableWrapperDoFn, "process") not in beam_speedups._DEFAULTS
    with pytest.raises(ValueError, match="duplicate process method parameters"):
        beam_speedups.get_dofn_specs(Duplicated())


def test_same_specs_as_beam_for_every_dofn_of_the_curation_pipeline(tmp_path):
    cfg = load_config()
    paths = [sample_corpus_path()]
    schema, _ = inspect_inputs(paths, Columns(id=cfg.input.id_column, text=cfg.input.text_column), None)
    p = beam.Pipeline()
    keep_beam_tempdir_in(p, tmp_path)
    build_pipeline(p, cfg, paths, schema, str(tmp_path))
    fns = []

    class Collect(PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.ParDo):
                fns.append(node.transform.fn)

    p.visit(Collect())
    assert len(fns) > 100
    for fn in fns:
        assert beam_speedups.get_dofn_specs(fn) == beam_speedups._ORIGINAL(fn), fn


def test_an_instance_is_answered_from_its_memo_with_fresh_sets(monkeypatch):
    dofn = Stateful()
    first = beam_speedups.get_dofn_specs(dofn)
    monkeypatch.setattr(beam_speedups, "_dofn_specs", lambda d: pytest.fail("introspected again"))
    again = beam_speedups.get_dofn_specs(dofn)
    assert again == first == ({COUNT}, {ALARM})
    again[0].clear()  # callers get their own sets
    assert beam_speedups.get_dofn_specs(dofn) == ({COUNT}, {ALARM})


def test_gc_is_tuned_once_per_process_keeping_the_collector_on():
    import gc
    import subprocess
    import sys

    code = (
        "import gc; from curate.pipelines.beam import speedups as b; b.tune_gc(); b.tune_gc(); "
        "print(gc.isenabled(), gc.get_threshold() == b.GC_THRESHOLD, gc.get_freeze_count() > 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True"]
    assert gc.isenabled()


def test_options_views_are_kept_and_read_and_write_what_new_views_would():
    from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, PipelineOptions, StandardOptions

    beam_speedups.install()
    assert PipelineOptions.view_as is beam_speedups.view_as
    options = PipelineOptions(["--direct_num_workers=3", "--experiments=a"])
    direct = options.view_as(DirectOptions)
    assert options.view_as(DirectOptions) is direct and direct.direct_num_workers == 3
    fresh = beam_speedups._ORIGINAL_VIEW_AS(options, DirectOptions)  # what Beam would hand out
    direct.direct_num_workers = 5
    assert fresh.direct_num_workers == 5 and options.view_as(DirectOptions).direct_num_workers == 5
    options.view_as(DebugOptions).add_experiment("b")
    assert beam_speedups._ORIGINAL_VIEW_AS(options, DebugOptions).experiments == ["a", "b"]
    other = PipelineOptions(["--direct_num_workers=7"])  # another options object: its own views
    assert other.view_as(DirectOptions) is not direct and other.view_as(DirectOptions).direct_num_workers == 7
    assert options.view_as(StandardOptions).runner is None
