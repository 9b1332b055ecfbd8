"""Memos for Beam's start-up work: DoFn state/timer introspection and options views.

``apache_beam.transforms.userstate.get_dofn_specs`` wraps *every* bound method
of a DoFn (about 30, most inherited from ``DoFn``) in a ``MethodWrapper`` and
calls ``inspect.signature`` on each, and Beam calls it several times per ParDo
while building, translating and executing the pipeline (thousands of calls
per run, a large share of a small run's start-up in a profile).

The answer for a method depends only on its function when that function comes
from the class, so the argument defaults are memoized per (class, method
name); the whole answer is also kept per DoFn instance, whose methods do not
change once it runs.  Methods set on the instance (``CallableWrapperDoFn.process``, the user
function of ``Map``/``FlatMap``/``Filter``) and classes that override the
``_<method>_argspec_fn`` hook are inspected every time, as Beam does.  The
result is the same sets of specs, and the same duplicate-parameter error.
"""

from __future__ import annotations

import gc
import types
import weakref

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import userstate

_DEFAULTS: dict = {}
_BY_INSTANCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ORIGINAL = userstate.get_dofn_specs


def _method_defaults(dofn, name: str):
    from apache_beam.runners.common import MethodWrapper

    if not isinstance(getattr(dofn, name, None), types.MethodType):
        return None
    hook = f"_{name}_argspec_fn"
    cacheable = name not in getattr(dofn, "__dict__", {}) and getattr(type(dofn), hook, None) is getattr(
        beam.DoFn, hook, None
    )
    key = (type(dofn), name)
    if cacheable and key in _DEFAULTS:
        return _DEFAULTS[key]
    defaults = MethodWrapper(dofn, name).defaults
    if cacheable:
        _DEFAULTS[key] = defaults
    return defaults


def get_dofn_specs(dofn):
    """``userstate.get_dofn_specs`` with the per-class memo and a per-instance one
    (the runner asks again for every DoFn of every bundle); same results and errors."""
    try:
        state_specs, timer_specs = _BY_INSTANCE[dofn]
        return set(state_specs), set(timer_specs)
    except (KeyError, TypeError):  # TypeError: an unhashable DoFn, never memoized
        pass
    specs = _dofn_specs(dofn)
    try:
        _BY_INSTANCE[dofn] = (frozenset(specs[0]), frozenset(specs[1]))
    except TypeError:
        pass
    return specs


def _dofn_specs(dofn):
    from apache_beam.transforms.core import _DoFnParam, _StateDoFnParam, _TimerDoFnParam

    state_specs, timer_specs = set(), set()
    for name in dir(dofn):
        defaults = _method_defaults(dofn, name)
        if defaults is None:
            continue
        param_ids = [d.param_id for d in defaults if isinstance(d, _DoFnParam)]
        if len(param_ids) != len(set(param_ids)):
            raise ValueError(f"DoFn {dofn!r} has duplicate {name} method parameters: {param_ids}.")
        for d in defaults:
            if isinstance(d, _StateDoFnParam):
                state_specs.add(d.state_spec)
            elif isinstance(d, _TimerDoFnParam):
                timer_specs.add(d.timer_spec)
    return state_specs, timer_specs


_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ORIGINAL_VIEW_AS = PipelineOptions.view_as


def view_as(self, cls):
    """``PipelineOptions.view_as``, one view per (options, class).

    Beam builds a new view, with a fresh argparse parser, on every call, and asks
    for one per transform applied and per output type inferred: over a thousand
    views, each with its own parser, in every run's start-up.  A view holds no state of its
    own: its values live in the ``_all_options`` dict it shares with ``self``, so
    a kept view reads and writes what a new one would."""
    views = _VIEWS.get(self)
    if views is None:
        views = _VIEWS[self] = {}
    view = views.get(cls)
    if view is None:
        view = views[cls] = _ORIGINAL_VIEW_AS(self, cls)
    return view


def install() -> None:
    """Replace the module function (its callers look it up at call time) and the
    options' ``view_as``."""
    userstate.get_dofn_specs = get_dofn_specs
    PipelineOptions.view_as = view_as


# Generation-0 threshold: Python's default (700 allocations) runs the collector
# thousands of times over the objects of a batch's Python work (candidate pairs,
# labels, Beam's own per-element objects); py-spy put 10% of a 100k-document
# dedup run in ``gc_collect_main``.  Our elements hold no reference cycles to
# speak of, so collecting ~150x less often costs little memory.
GC_THRESHOLD = (100_000, 50, 1000)
_gc_tuned = False


def tune_gc() -> None:
    """Once per process: move what exists (modules, models, the pipeline graph) out of
    the collector's sight (``gc.freeze``) and collect less often."""
    global _gc_tuned
    if _gc_tuned:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    _gc_tuned = True
