"""Beam's DaskRunner with the defects that lose or multiply work fixed.

apache-beam 2.77's ``DaskRunner`` translates a pipeline into dask bags, but
(all checked here against a ``dask.distributed`` cluster on loopback):

1. it collects a ParDo's outputs *before* ``finish_bundle``, so whatever a
   DoFn emits there is lost (``BatchElements`` emits its last batch there);
2. it merges every output of a multi-output ParDo into one bag, and tagged
   outputs arrive wrapped;
3. a side input is a bag recomputed inside every task that reads it (its whole
   upstream graph, once per partition);
4. it computes only the last transform's bag, so other sinks may never run;
5. ``GroupByKey`` keeps the input's partition count, so a pipeline read from a
   few shards never spreads after its first shuffle, and ``Flatten`` adds the
   partition counts up (thousands of empty tasks in a pipeline of ~400 steps).

Also slow there: a bag ``groupby`` ships lists of Python tuples, which
dask.distributed serializes element by element (25x slower than the same bytes
as one frame), and the window reification before each shuffle pickles a
``WindowedValue`` per element.

``DaskRunner`` here keeps Beam's translation of Create/Flatten, shuffles with
one all-to-all exchange of pickled buckets (``_group_by_key``, no window
reification in the global window), and replaces the ParDo and the graph
walk: one DoFn invocation per partition with fresh receivers, outputs
collected after ``finish_bundle`` as ``(tag, value)`` pairs that each consuming
ParDo filters by its tag as it reads them, side inputs materialized once as a
dask ``Delayed`` shared by all partitions, groups and flattened collections
spread over ``dask_npartitions``, and every leaf computed.  Select it with
``--runner=curate.pipelines.beam.dask_runner.DaskRunner`` (``configs/dask.yaml``).
"""

from __future__ import annotations

import collections
import logging
import pickle
import zlib

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.pipeline import PipelineVisitor
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import transform_evaluator as te
from apache_beam.runners.dask.overrides import dask_overrides
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindow, GlobalWindows, TimestampedValue
from apache_beam.utils.windowed_value import WindowedValue

from curate.pipelines.beam import require_tested_beam


class _ListReceiver(Receiver):
    def __init__(self, tag, out: list):
        self.tag, self.out = tag, out

    def receive(self, windowed_value):
        self.out.append((self.tag, windowed_value.value))


class _Receivers(dict):
    """tag -> receiver appending ``(tag, value)`` to one list (None = main output)."""

    def __init__(self):
        super().__init__()
        self.out: list = []

    def __missing__(self, tag):
        self[tag] = _ListReceiver(tag, self.out)
        return self[tag]


_GLOBAL_WINDOWS = (GlobalWindow(),)


class _ANY_TAG:  # noqa: N801 - a sentinel that keeps its identity through pickling (by reference)
    """The input bag holds plain values, not ``(tag, value)`` pairs."""


def _windowed(item, window_fn):
    """``te.get_windowed_value`` without its per-element cost in the global window.

    Beam's helper builds a ``GlobalWindow`` per element, and its constructor
    parses the max timestamp from a proto constant each time: most of the
    runner's per-element cost (most of the stage's time in a profile).
    """
    if window_fn is None or isinstance(window_fn, GlobalWindows):
        if isinstance(item, WindowedValue):
            return item
        if isinstance(item, TaggedOutput):
            item = item.value
        if not isinstance(item, TimestampedValue):
            return WindowedValue(item, 0, _GLOBAL_WINDOWS)
    return te.get_windowed_value(item, window_fn)


def _run_partition(items, tag, fn, label, window_fn, args, kwargs, side_specs, *side_values):
    """One bundle: setup, start, process every item, finish, teardown; then the outputs.

    ``items`` are the producer's ``(tag, value)`` pairs when ``tag`` is given
    (only that tag's values are processed, no separate filter pass over the
    bag), else plain values.
    """
    side_inputs = [
        SideInputMap(view_class, view_options, [_windowed(v, mapping) for v in values])
        for (view_class, view_options, mapping), values in zip(side_specs, side_values)
    ]
    receivers = _Receivers()
    handler = _OutputHandler(
        window_fn=window_fn,
        main_receivers=receivers[None],
        tagged_receivers=receivers,
        per_element_output_counter=None,
        output_batch_converter=None,
        process_yields_batches=False,
        process_batch_yields_elements=False,
    )
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn),
        handler,
        context=DoFnContext(label, state=None),
        side_inputs=side_inputs,
        input_args=list(args),
        input_kwargs=kwargs,
        user_state_context=None,
        bundle_finalizer_param=beam.DoFn.BundleFinalizerParam(),
    )
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    process = invoker.invoke_process
    if tag is _ANY_TAG:
        for item in items:
            process(_windowed(item, window_fn))
    else:
        for item_tag, item in items:
            if item_tag == tag:
                process(_windowed(item, window_fn))
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    return _Part(receivers.out)


def _concat(parts):
    return _Part(value for part in parts for value in part)


def _select(pairs, tag) -> "_Part":
    """The values of one tag from a partition of ``(tag, value)`` pairs, as one frame."""
    return _Part(value for item_tag, value in pairs if item_tag == tag)


def _as_part(items) -> "_Part":
    return _Part(items)


class _Visitor(PipelineVisitor):
    def __init__(self, bag_kwargs: dict):
        self.bag_kwargs = bag_kwargs
        self.bags: dict = collections.OrderedDict()
        self.tagged: set = set()  # producers whose bag holds (tag, value) pairs
        self.consumed: set = set()
        self.materialized: dict = {}

    def bag_of(self, pcoll):
        producer = pcoll.producer
        self.consumed.add(producer)
        bag = self.bags[producer]
        if producer in self.tagged:
            bag = bag.map_partitions(_select, pcoll.tag)
        return bag

    def source_of(self, pcoll):
        """``(bag, tag)`` for a ParDo input: the producer's bag unfiltered when it holds tagged pairs."""
        producer = pcoll.producer
        if producer in self.tagged:
            self.consumed.add(producer)
            return self.bags[producer], pcoll.tag
        return self.bag_of(pcoll), _ANY_TAG

    def side_values(self, pcoll):
        """The side input's elements, computed once for all partitions."""
        import dask

        if pcoll not in self.materialized:
            self.materialized[pcoll] = dask.delayed(_concat)(self.bag_of(pcoll).to_delayed(optimize_graph=False))
        return self.materialized[pcoll]

    def visit_transform(self, node) -> None:
        transform = node.transform
        # exact class, as Beam's translation: the GroupAlsoByWindow ParDo subclass stays a
        # pass-through after the bag groupby (global windows only, as Beam's DaskRunner)
        if (
            transform.__class__ is beam.ParDo
            and isinstance(transform.fn, beam.GroupByKey.ReifyWindows)
            and isinstance(node.inputs[0].windowing.windowfn, GlobalWindows)
        ):
            # in the global window the shuffle needs no windows: pickling a WindowedValue per
            # element made the shuffles' transfers crawl (~3 MB/s between two workers)
            self.bags[node] = self.bag_of(node.inputs[0])
            return
        if transform.__class__ is beam.ParDo:
            self.bags[node] = self.par_do(node, transform, *self.source_of(node.inputs[0]))
            self.tagged.add(node)
            return
        inputs = [self.bag_of(pc) for pc in node.inputs if not isinstance(pc, pvalue.PBegin)]
        op = te.TRANSLATIONS.get(transform.__class__, te.NoOp)(node, bag_kwargs=self.bag_kwargs)
        if isinstance(op, te.Flatten):
            # concat adds up partitions; without this, a Flatten of the per-stage
            # counters fans out into thousands of mostly empty tasks
            bag = op.apply(inputs)
            limit = self.bag_kwargs.get("npartitions")
            bag = bag.repartition(limit) if limit and bag.npartitions > limit else bag
            self.bags[node] = bag.map_partitions(_as_part)  # one frame when it moves between workers
        elif isinstance(op, te.GroupByKey):
            self.bags[node] = _group_by_key(inputs[0], self.bag_kwargs.get("npartitions") or inputs[0].npartitions)
        else:
            self.bags[node] = op.apply(inputs[0] if len(inputs) == 1 else (inputs or None))

    def par_do(self, node, transform, bag, tag):
        args, kwargs = transform.raw_side_inputs
        main = next(iter(node.main_inputs.values()))
        window_fn = main.windowing.windowfn if hasattr(main, "windowing") else None
        specs, values = [], []
        for side in node.side_inputs:
            specs.append((type(side), side._view_options(), side._window_mapping_fn))
            values.append(self.side_values(side.pvalue))
        return bag.map_partitions(
            _run_partition, tag, transform.fn, transform.label, window_fn, list(args), kwargs, specs, *values
        )

    def leaves(self) -> list:
        return [bag for node, bag in self.bags.items() if node not in self.consumed]


class _Part(list):
    """A partition's elements.  Not ``type(x) is list``, so dask.distributed pickles
    it as one frame; a plain list of tuples is serialized element by element
    (many small pickled pairs cost far more between workers than the same bytes
    as one blob)."""


def _partition_of(key, n: int) -> int:
    """Shuffle destination; the same in every worker process (``hash(str)`` is
    salted per process).  Keys are what Beam keys by: ints, strings, bytes and
    tuples of them, whose ``repr`` is determined by their value."""
    if type(key) is int:
        return key % n
    if type(key) is str:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % n
    return zlib.crc32(repr(key).encode("utf-8", "surrogatepass")) % n


def _split(items, n: int) -> tuple:
    """One input partition -> n pickled buckets of (key, value), one per destination."""
    buckets = [[] for _ in range(n)]
    for key, value in items:
        buckets[_partition_of(key, n)].append((key, te.defenestrate(value)))
    return tuple(pickle.dumps(bucket, protocol=pickle.HIGHEST_PROTOCOL) for bucket in buckets)


def _pick_bucket(buckets: tuple, j: int) -> bytes:
    return buckets[j]


def _merge(*blobs) -> _Part:
    """The buckets sent to one destination -> (key, [values]) in input order."""
    groups: dict = {}
    for blob in blobs:
        for key, value in pickle.loads(blob):
            groups.setdefault(key, []).append(value)
    return _Part(groups.items())


def _group_by_key(bag, n: int):
    """GroupByKey as one all-to-all exchange of pickled buckets.

    dask.bag's ``groupby`` moves lists of Python tuples between workers,
    serialized element by element; here each (input, destination) pair is one
    bytes frame, and a group's values keep the order of the input partitions.
    """
    import dask
    import dask.bag as db

    splits = [dask.delayed(_split)(part, n) for part in bag.to_delayed(optimize_graph=False)]
    merged = [dask.delayed(_merge)(*[dask.delayed(_pick_bucket)(s, j) for s in splits]) for j in range(n)]
    return db.from_delayed(merged)


class DaskRunner(beam_dask.DaskRunner):
    """Beam's DaskRunner with the fixes listed in this module's docstring."""

    def run_pipeline(self, pipeline, options):
        require_tested_beam("dask_runner")  # replaces transform evaluators of apache-beam 2.77's DaskRunner
        import dask
        import dask.distributed as ddist

        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options)
        client = ddist.Client(**dask_options)
        try:
            pipeline.replace_all(dask_overrides())
            visitor = _Visitor(bag_kwargs)
            pipeline.visit(visitor)
            futures = client.compute(dask.optimize(*visitor.leaves()))
        except BaseException:
            client.close()
            raise
        return _Result(client, futures)


class _Result(beam_dask.DaskRunnerResult):
    """Closes the client once the run is over (Beam's result leaves it open)."""

    def wait_until_finish(self, duration=None):
        try:
            return super().wait_until_finish(duration)
        finally:
            self.client.close()


RUNNER = f"{__name__}.DaskRunner"


class LocalDaskCluster:
    """A ``dask.distributed`` scheduler and ``workers`` single-threaded worker
    processes on loopback, for ``curate run --dask-workers N``; yields the Beam
    options that point the run at it."""

    def __init__(self, workers: int, partitions: int | None = None):
        # 4 partitions per worker: with 2 per worker a worker idles while the other finishes its
        # heavier partition (the partition counts were compared in a 2-worker run; see performance_notes.md)
        self.workers, self.partitions = workers, partitions or 4 * workers

    def __enter__(self) -> list[str]:
        from dask.distributed import LocalCluster

        logging.getLogger("distributed").setLevel(logging.ERROR)
        self.cluster = LocalCluster(
            n_workers=self.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=50,
        )
        return [
            f"--runner={RUNNER}",
            f"--dask_client_address={self.cluster.scheduler_address}",
            f"--dask_npartitions={self.partitions}",
        ]

    def __exit__(self, *exc):
        self.cluster.close()
