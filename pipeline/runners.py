"""Runner choice and runner limits: `--runner=DaskRunner` works, and what a runner lacks fails in one sentence.

`prepare_runner(options)` runs before a pipeline is built. It maps the short names `DaskRunner` / `dask`
(Beam only knows the dotted path) to wirewash's `DaskRunner` below, and raises `UnsupportedRunnerError`
(a ValueError, so the CLI prints one sentence) when the options ask a runner for something it cannot do.

Why wirewash ships its own `DaskRunner`: Beam's `apache_beam.runners.dask.dask_runner.DaskRunner`
translates a pipeline into dask bags, and it (the first two measured on a real `dask.distributed` cluster,
the others read from its source):
  - hands EVERY output of a multi-output ParDo to each consumer (a consumer of the `rejected` output also
    receives the main output), because one bag stands for all of a transform's outputs;
  - drops what `DoFn.finish_bundle` emits (the bundle's results are collected before it runs);
  - recomputes each side input's whole upstream graph inside every task that reads it, and computes only
    the last transform visited, so a branch that does not lead to it never runs;
  - sets every DoFn up again for every bundle;
  - turns `Reshuffle` into nothing, so a single input file stays in one partition (one core).
The subclass below keeps Beam's translation of Create, GroupByKey and Flatten and fixes those points: each
consumer selects its own output tag, finish_bundle outputs are kept, side inputs are real graph
dependencies computed once, every sink is computed, a DoFn instance serves one bundle at a time (set up
once per worker process, then reused as on Beam's other runners), and Reshuffle repartitions. What it still
lacks (and says so): streaming, state and timers, `beam.io.Read` sources, metrics (`result.metrics()` is
empty).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import threading
from typing import Any

from apache_beam import pvalue
from apache_beam.runners import runner as _beam_runner
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

__all__ = ["prepare_runner", "UnsupportedRunnerError", "DASK_RUNNER", "is_dask_runner"]

DASK_RUNNER = "wirewash.pipeline.runners.DaskRunner"
_DASK_NAMES = {"daskrunner", "dask", "apache_beam.runners.dask.dask_runner.daskrunner", DASK_RUNNER.lower()}


class UnsupportedRunnerError(ValueError):
    """The options ask a runner for something it cannot do; the message is one sentence."""


def is_dask_runner(runner: Any) -> bool:
    return isinstance(runner, str) and runner.lower() in _DASK_NAMES


def register_fnapi_runner() -> None:
    """Makes `FnApiRunner` a runner short name, as Beam releases after 2.62 (the one pinned for Flink and
    Kafka) do. Beam offers no public hook for that: its private `_RUNNER_MAP` is the only one, used here alone
    and checked by `test_fnapi_runner_short_name_is_known`. Called where runners are chosen, never at import."""
    _beam_runner._RUNNER_MAP.setdefault("fnapirunner", "apache_beam.runners.portability.fn_api_runner.FnApiRunner")


def prepare_runner(options: PipelineOptions) -> None:
    """Maps Dask runner names to wirewash's DaskRunner and refuses what it cannot run, in one sentence."""
    register_fnapi_runner()
    _unabbreviate_output(options)
    standard = options.view_as(StandardOptions)
    if not is_dask_runner(standard.runner):
        return
    if standard.streaming:
        raise UnsupportedRunnerError(
            "the DaskRunner runs batch pipelines only (no streaming, state or timers): drop --streaming, or "
            "stream on the DirectRunner, Flink or Dataflow")
    if importlib.util.find_spec("distributed") is None:
        raise UnsupportedRunnerError(
            "the DaskRunner needs dask.distributed: pip install \"wirewash[dask]\" (apache-beam[dask])")
    standard.runner = DASK_RUNNER


def _unabbreviate_output(options: PipelineOptions) -> None:
    """Beam's option views parse their flags with argparse's prefix matching, so wirewash's `--output LAKE`
    also reads as Beam's `--output_executable_path LAKE`; a Flink or Spark job server then writes a jar over
    the lake instead of running the job. Unset it unless that flag was really given."""
    from apache_beam.options.pipeline_options import PortableOptions

    if not any(str(flag).startswith("--output_executable_path") for flag in getattr(options, "_flags", ())):
        options.view_as(PortableOptions).output_executable_path = None


# ---------------------------------------------------------------------------------------------------------
# The DaskRunner (imported only when used: dask is an optional extra)
# ---------------------------------------------------------------------------------------------------------

def _select_output(items, tag):
    """The elements of one output of a multi-output ParDo's bag: main outputs are plain values, tagged ones
    `TaggedOutput(tag, WindowedValue)`."""
    if tag is None:
        return [x for x in items if not isinstance(x, pvalue.TaggedOutput)]
    return [x.value for x in items if isinstance(x, pvalue.TaggedOutput) and x.tag == tag]


# Worker side: set-up DoFn instances waiting for their next bundle, per pickled DoFn. As on Beam's own
# runners, an instance is set up once and then runs bundle after bundle (never two at a time).
_IDLE_DOFNS: dict = {}
_IDLE_LOCK = threading.Lock()


def _run_bundle(items, fn_bytes, label, window_fn, args, kwargs, side_specs, *side_values):
    """One dask partition = one bundle: start, every element, finish, on a DoFn of this process that no
    other bundle is using. Returns main outputs as plain values and tagged outputs as TaggedOutput,
    finish_bundle's included."""
    from apache_beam import DoFn
    from apache_beam.internal import pickler
    from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
    from apache_beam.runners.dask.transform_evaluator import OneReceiver, get_windowed_value
    from apache_beam.transforms.sideinputs import SideInputMap

    side_specs = pickler.loads(side_specs)
    key = hashlib.sha256(fn_bytes).digest()
    with _IDLE_LOCK:
        idle = _IDLE_DOFNS.setdefault(key, [])
        fn, ready = (idle.pop(), True) if idle else (pickler.loads(fn_bytes), False)
    receivers = OneReceiver()
    handler = _OutputHandler(window_fn=window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
                             per_element_output_counter=None, output_batch_converter=None,
                             process_yields_batches=False, process_batch_yields_elements=False)
    side_inputs = [SideInputMap(view_class, view_options, [get_windowed_value(v, window_fn) for v in values])
                   for (view_class, view_options), values in zip(side_specs, side_values)]
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn), handler, context=DoFnContext(label, state=None), side_inputs=side_inputs,
        input_args=args, input_kwargs=kwargs, user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam())
    if not ready:
        invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(get_windowed_value(item, window_fn))
    invoker.invoke_finish_bundle()
    with _IDLE_LOCK:  # only after a clean bundle: a DoFn that raised is dropped
        _IDLE_DOFNS[key].append(fn)
    return [v if isinstance(v, pvalue.TaggedOutput) else v.value for v in receivers.values]


def _as_list(*partitions):
    return [x for part in partitions for x in part]


def _make_dask_runner():
    import dask
    from apache_beam.internal import pickler
    from apache_beam.metrics.metric import MetricResults
    from apache_beam.pipeline import PipelineVisitor
    from apache_beam.runners.common import DoFnSignature
    from apache_beam.runners.dask import dask_runner as beam_dask
    from apache_beam.runners.dask import transform_evaluator as ev
    from apache_beam.runners.dask.overrides import _Read, _Reshuffle, dask_overrides

    import apache_beam as beam

    class _NoMetrics(MetricResults):
        def query(self, filter=None):
            return {"counters": [], "distributions": [], "gauges": [], "string_sets": [], "bounded_tries": []}

    class _Result(beam_dask.DaskRunnerResult):
        def wait_until_finish(self, duration=None):
            state = super().wait_until_finish(duration)
            self.client.close()  # a finished run leaves no connection (or thread) behind
            return state

        def metrics(self):
            return _NoMetrics()

    class _Visitor(PipelineVisitor):
        def __init__(self, bag_kwargs: dict, npartitions: int):
            self.bag_kwargs = bag_kwargs
            self.npartitions = npartitions
            self.bags: dict = {}
            self.consumed: set = set()

        def input_bag(self, pcoll):
            """The bag of one PCollection: the producer's bag, narrowed to this output's tag for a ParDo."""
            if isinstance(pcoll, pvalue.PBegin):
                return None
            producer = pcoll.producer
            self.consumed.add(producer)
            bag = self.bags[producer]
            if producer.transform.__class__ is not beam.ParDo:  # subclasses (GroupAlsoByWindow...) are no-ops
                return bag
            tag = next(t for t, out in producer.outputs.items() if out is pcoll)
            main = tag is None or tag == "None" or tag == getattr(producer.transform, "_main_tag", object())
            return bag.map_partitions(_select_output, None if main else tag)

        def visit_transform(self, node) -> None:
            transform = node.transform
            inputs = [self.input_bag(pc) for pc in node.inputs]
            if transform.__class__ is beam.ParDo:
                self.bags[node] = self.par_do(node, inputs[0])
            elif isinstance(transform, _Reshuffle):
                bag = inputs[0]
                self.bags[node] = bag.repartition(npartitions=max(bag.npartitions, self.npartitions))
            else:
                op_class = ev.TRANSLATIONS.get(transform.__class__, ev.NoOp)
                settings = {f.name for f in dataclasses.fields(op_class)} if dataclasses.is_dataclass(op_class) else ()
                op = op_class(node, **({"bag_kwargs": self.bag_kwargs} if "bag_kwargs" in settings else {}))
                if op.__class__ is ev.Flatten:
                    # concat adds up the inputs' partitions: chained joins (each a Flatten) would double them
                    bag = op.apply([b for b in inputs if b is not None])
                    self.bags[node] = bag.repartition(npartitions=min(bag.npartitions, self.npartitions))
                else:
                    self.bags[node] = op.apply(inputs[0] if inputs else None)

        def par_do(self, node, bag):
            transform = node.transform
            args, kwargs = transform.raw_side_inputs
            main_input = next(iter(node.main_inputs.values()))
            window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") else None
            side_specs, side_values = [], []
            for side in node.side_inputs:
                side_specs.append((type(side), side._view_options()))
                # One graph dependency, computed once, handed whole to every partition.
                side_values.append(dask.delayed(_as_list)(*self.input_bag(side.pvalue).to_delayed()))
            # Pickled: older dask reads a (callable, argument) tuple inside the arguments as a task to run.
            return bag.map_partitions(_run_bundle, pickler.dumps(transform.fn), node.full_label, window_fn,
                                      list(args), dict(kwargs), pickler.dumps(side_specs), *side_values)

    class _Check(PipelineVisitor):
        """Refuses, before any cluster is contacted, what the translation cannot run."""

        def visit_transform(self, node) -> None:
            transform = node.transform
            if isinstance(transform, _Read) or type(transform).__name__ in ("Impulse", "TestStream"):
                raise UnsupportedRunnerError(
                    f"the DaskRunner cannot run {type(transform).__name__} ({node.full_label}): it has no "
                    "sources or streams; use another runner")
            if transform.__class__ is beam.ParDo and DoFnSignature(transform.fn).is_stateful_dofn():
                raise UnsupportedRunnerError(
                    f"the DaskRunner has no state or timers, which {node.full_label} needs: run it on the "
                    "DirectRunner, Flink or Dataflow")

    def _dask_parser():
        import argparse

        parser = argparse.ArgumentParser()
        beam_dask.DaskOptions._add_argparse_args(parser)  # the Dask client's (and bags') own settings
        return parser

    class DaskRunner(beam_dask.DaskRunner):
        """Beam's DaskRunner with multi-output ParDos, finish_bundle outputs, side inputs and Reshuffle
        fixed (see the module docstring). Batch only."""

        def run_pipeline(self, pipeline, options):
            import dask.distributed as ddist

            if options.view_as(StandardOptions).streaming:
                raise UnsupportedRunnerError("the DaskRunner runs batch pipelines only: drop --streaming")
            own = {action.dest for action in _dask_parser()._actions}
            dask_options = {k: v for k, v in options.view_as(beam_dask.DaskOptions).get_all_options(
                drop_default=True).items() if k in own}
            bag_kwargs = {k: dask_options.pop(k) for k in ("npartitions", "partition_size") if k in dask_options}
            pipeline.replace_all(dask_overrides())
            pipeline.visit(_Check())
            client = ddist.Client(**dask_options)
            threads = sum(client.nthreads().values()) or 1
            visitor = _Visitor(bag_kwargs, bag_kwargs.get("npartitions") or 2 * threads)
            pipeline.visit(visitor)
            sinks = [bag for node, bag in visitor.bags.items() if node not in visitor.consumed and bag is not None]
            futures = client.compute(dask.optimize(*sinks))
            return _Result(client, futures)

    return DaskRunner


def __getattr__(name: str):
    # `--runner=pipeline.runners.DaskRunner` resolves here; dask is imported only then.
    if name == "DaskRunner":
        runner = _make_dask_runner()
        globals()["DaskRunner"] = runner
        return runner
    raise AttributeError(name)

