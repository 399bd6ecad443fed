"""Runner choice and runner limits: `--runner=DaskRunner` works, and what a runner lacks fails in one sentence.

`prepare_runner(options)` runs before a pipeline is built. It maps the short names `DaskRunner` / `dask`
(Beam only knows the dotted path) to wirewash's `DaskRunner` below, and raises `UnsupportedRunnerError`
(a ValueError, so the CLI prints one sentence) when the options ask a runner for something it cannot do.

Why wirewash ships its own `DaskRunner`: Beam 2.62's `apache_beam.runners.dask.dask_runner.DaskRunner`
translates a pipeline into dask bags, and deploy/dask/README.md ("Upstream bugs") shows, each with a few
lines that fail on it, that it hands every output of a multi-output ParDo to each consumer, drops what
`finish_bundle` emits, mixes the outputs of bundles that share a worker process's receiver, and raises on
`result.metrics()`; it also sets every DoFn up again for every bundle, turns `Reshuffle` into nothing and
brings every PCollection back to the client. The subclass below keeps Beam's overrides and its translation
of Create, GroupByKey and Flatten, and replaces only its ParDo (`_run_bundle`: fresh receivers, finish_bundle
kept, a DoFn set up once per worker process and used by one bundle at a time, side inputs handed in as graph
dependencies), the choice of a consumer's input (its own output tag), Reshuffle (a repartition) and what is
computed (the sinks only). What it still lacks (and says so): streaming, state and timers, `beam.io.Read`
sources, metrics (`result.metrics()` is empty).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import sys
import threading
from typing import Any, Optional

from apache_beam import pvalue
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from wirewash.pipeline.beam_internals import add_runner_short_name, given_flags
from wirewash.pipeline.lifetime import LAUNCHER_ENV

__all__ = ["prepare_runner", "UnsupportedRunnerError", "DASK_RUNNER", "is_dask_runner", "resolve_runner",
           "local_workers", "tune_malloc", "is_local_runner", "use_local_streaming_runner", "LOCAL_RUNNERS"]

DASK_RUNNER = "wirewash.pipeline.runners.DaskRunner"
_DASK_NAMES = {"daskrunner", "dask", "apache_beam.runners.dask.dask_runner.daskrunner", DASK_RUNNER.lower()}


class UnsupportedRunnerError(ValueError):
    """The options ask a runner for something it cannot do; the message is one sentence."""


def is_dask_runner(runner: Any) -> bool:
    return isinstance(runner, str) and runner.lower() in _DASK_NAMES


def register_fnapi_runner() -> None:
    """Makes `FnApiRunner` a runner short name, as Beam releases after 2.62 (the one pinned for Flink and
    Kafka) do (through pipeline/beam_internals.py: Beam has no public hook for it). Called where runners are
    chosen, never at import."""
    add_runner_short_name("FnApiRunner", "apache_beam.runners.portability.fn_api_runner.FnApiRunner")


def prepare_runner(options: PipelineOptions) -> None:
    """Maps Dask runner names to wirewash's DaskRunner and refuses, in one sentence, a runner that does not
    exist (`check_runner_name`) or what a runner cannot run. Reads and writes no file: it runs first."""
    register_fnapi_runner()
    _unabbreviate_output(options)
    standard = options.view_as(StandardOptions)
    if not is_dask_runner(standard.runner):
        check_runner_name(standard.runner)
        return
    if standard.streaming:
        raise UnsupportedRunnerError(
            "the DaskRunner runs batch pipelines only (no streaming, state or timers): drop --streaming, or "
            "stream on the DirectRunner, Flink or Dataflow")
    if importlib.util.find_spec("distributed") is None:
        raise UnsupportedRunnerError(
            "the DaskRunner needs dask.distributed: pip install \"wirewash[dask]\" (apache-beam[dask])")
    standard.runner = DASK_RUNNER


def check_runner_name(runner: Any) -> None:
    """Raises UnsupportedRunnerError when `--runner` names no runner class: not one of Beam's short names (or
    wirewash's), or a dotted path whose module or class is not there. The runner is not made here (Beam makes
    it with the pipeline); only its name is resolved, as Beam's `create_runner` does."""
    from apache_beam.runners.runner import _RUNNER_MAP

    if runner is None or not isinstance(runner, str):  # None: Beam's default; an object: the caller's own
        return
    path = _RUNNER_MAP.get(runner.lower(), _RUNNER_MAP.get(runner.lower() + "runner", runner))
    known = ", ".join(sorted({p.rsplit(".", 1)[-1] for p in _RUNNER_MAP.values()}))
    if "." not in path.strip("."):
        raise UnsupportedRunnerError(f"unknown runner {runner!r} for --runner; choose one of {known}, or the "
                                     "dotted path of a PipelineRunner class")
    module, name = path.rsplit(".", 1)
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError as err:  # a runner of an extra that is not installed (apache_beam[gcp]...)
        raise UnsupportedRunnerError(f"--runner {runner} cannot be loaded here ({err}); is the extra it needs "
                                     "installed (e.g. pip install \"apache-beam[gcp]\")?") from None
    except Exception as err:  # noqa: BLE001 - a module that fails at import: still one sentence
        raise UnsupportedRunnerError(f"--runner {runner} cannot be loaded: {type(err).__name__}: {err}") from None
    if not isinstance(found, type):
        raise UnsupportedRunnerError(f"--runner {runner}: {module} has no runner class {name!r}")


def _unabbreviate_output(options: PipelineOptions) -> None:
    """Beam's option views parse their flags with argparse's prefix matching, so wirewash's `--output LAKE`
    also reads as Beam's `--output_executable_path LAKE`; a Flink or Spark job server then writes a jar over
    the lake instead of running the job. Unset it unless that flag was really given."""
    from apache_beam.options.pipeline_options import PortableOptions

    if not any(flag.startswith("--output_executable_path") for flag in given_flags(options)):
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
        def __init__(self, npartitions: int):
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
            else:  # Beam's own translation (Create, GroupByKey, Flatten; anything else passes its input on)
                op = ev.TRANSLATIONS.get(transform.__class__, ev.NoOp)(node)
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
        beam_dask.DaskOptions._add_argparse_args(parser)  # the Dask client's settings
        return parser

    class DaskRunner(beam_dask.DaskRunner):
        """Beam's DaskRunner with its ParDo, output selection, Reshuffle and result replaced (see the module
        docstring and deploy/dask/README.md, "Upstream bugs"). Batch only."""

        def run_pipeline(self, pipeline, options):
            import dask.distributed as ddist

            if options.view_as(StandardOptions).streaming:
                raise UnsupportedRunnerError("the DaskRunner runs batch pipelines only: drop --streaming")
            # Beam hands Client() every option that is not at its default (--runner, --input...): only the
            # Dask client's own, as DaskOptions declares them
            own = set(vars(_dask_parser().parse_args([])))
            dask_options = {k: v for k, v in options.view_as(beam_dask.DaskOptions).get_all_options(
                drop_default=True).items() if k in own}
            pipeline.replace_all(dask_overrides())
            pipeline.visit(_Check())
            client = ddist.Client(**dask_options)
            threads = sum(client.nthreads().values()) or 1
            visitor = _Visitor(2 * threads)
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


# ---------------------------------------------------------------------------------------------------------
# Local runner choice: which runner a run gets, with how many worker processes, and its malloc tuning
# ---------------------------------------------------------------------------------------------------------

LOCAL_RUNNERS = (None, "DirectRunner", "direct", "Direct")  # the names that mean "run it here" (Beam's default)
LOCAL_BATCH_RUNNER = "FnApiRunner"  # what a local batch run runs on (`resolve_runner`)
LOCAL_STREAMING_RUNNER = "BundleBasedDirectRunner"  # what a local streaming run runs on
# Below this much input, two worker processes (~1.7 s to start, and every stage boundary crossing a process)
# cost more than they save; the in-process runner is faster.
MULTIPROCESS_MIN_BYTES = 4 << 20
WORKER_COMMAND = "-m wirewash.pipeline.worker"
# glibc's malloc keeps memory the local runner's threads have freed: it gives every thread that allocates under
# contention its own arena (up to 8 per core) and rarely hands an arena's free pages back, and after a large
# block is freed it raises its mmap threshold (up to 32 MB), so later multi-MB data-plane buffers come from
# the heap and leave holes there. Two arenas and a fixed 1 MB mmap threshold, for the launcher (set at run
# time, before the runner starts its threads) and the worker processes (through their environment): at
# 10,000 records the launcher went 646 -> 423 MB (arenas) -> 364 MB (threshold), the workers 661 -> 467 MB.
MALLOC_ARENAS = 2
MALLOC_MMAP_THRESHOLD = 1 << 20
M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3  # mallopt() parameter numbers, from glibc's malloc.h
WORKER_MALLOC_ENV = f"MALLOC_ARENA_MAX={MALLOC_ARENAS} MALLOC_MMAP_THRESHOLD_={MALLOC_MMAP_THRESHOLD}"


def tune_malloc() -> bool:
    """Caps this process's glibc malloc arenas and fixes its mmap threshold (see above); False where there
    is no glibc (other systems keep their allocator as it is)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)) and bool(
            libc.mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False


def _explicit_flags(options: PipelineOptions) -> set:
    """Names of the options given on the command line (a default that was typed counts as given)."""
    return {f.split("=", 1)[0].lstrip("-") for f in given_flags(options) if f.startswith("--")}


def local_workers(options: PipelineOptions, input_bytes: int) -> int:
    """How many worker processes a local batch run gets: 1 (in-process) or several (one per core).

    Explicit `--direct_running_mode` / `--direct_num_workers` win; otherwise inputs of at least
    MULTIPROCESS_MIN_BYTES get one process per core, smaller ones stay in process.
    """
    direct = options.view_as(DirectOptions)
    given = _explicit_flags(options)
    cores = os.cpu_count() or 1
    if "direct_running_mode" in given:
        if direct.direct_running_mode != "multi_processing":
            return 1
        return direct.direct_num_workers or cores if "direct_num_workers" in given else cores
    if "direct_num_workers" in given:
        return direct.direct_num_workers or cores
    return cores if input_bytes >= MULTIPROCESS_MIN_BYTES else 1


def resolve_runner(options: PipelineOptions, input_bytes: int = 0,
                   streaming: Optional[bool] = None) -> Optional[Any]:
    """The runner for these options. Any explicit non-direct `--runner` is left alone (returns None).

    Local batch runs use the FnApiRunner (what the DirectRunner falls back to, minus its attempt to download
    the Prism binary): in process for small inputs, else with one worker process per core (see
    `local_workers`), each started as `python -m wirewash.pipeline.worker` so that workers do not print Beam's start-up
    noise. Local streaming runs use the BundleBasedDirectRunner (`streaming`: the run's mode; None: as the
    options say). Local batch runs tune glibc's malloc
    (launcher and workers, `tune_malloc`), so that memory the runner's threads free goes back to use.
    """
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    standard = options.view_as(StandardOptions)
    streaming = standard.streaming if streaming is None else streaming  # the run's mode (RunSettings.streaming)
    if standard.runner not in LOCAL_RUNNERS + (LOCAL_BATCH_RUNNER,):
        return None
    if standard.runner != LOCAL_BATCH_RUNNER and streaming:
        standard.runner = LOCAL_STREAMING_RUNNER
        return None
    standard.runner = LOCAL_BATCH_RUNNER
    tune_malloc()
    workers = local_workers(options, input_bytes)
    direct = options.view_as(DirectOptions)
    if workers <= 1:
        if direct.direct_running_mode == "multi_processing":
            direct.direct_running_mode = "in_memory"
        direct.direct_num_workers = 1
        return FnApiRunner()
    # The FnApiRunner would start Beam's own worker command for `multi_processing`; ours is the same worker
    # with a quiet stderr, passed as the default environment with the running mode left in memory.
    direct.direct_running_mode = "in_memory"
    direct.direct_num_workers = workers
    command = f"{shlex.quote(sys.executable)} {WORKER_COMMAND}"
    if os.name == "posix":  # Beam starts the command through the shell; workers follow this process
        # `exec`: the worker replaces the shell, so the shell cannot die of a terminal's Ctrl-C before it
        command = f"{WORKER_MALLOC_ENV} {LAUNCHER_ENV}={os.getpid()} exec {command}"
    return FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(command))


def is_local_runner(runner: Any) -> bool:
    """Runs on this machine (Beam's default, or what `resolve_runner` turned it into)."""
    return runner in LOCAL_RUNNERS + (LOCAL_BATCH_RUNNER, LOCAL_STREAMING_RUNNER)


def use_local_streaming_runner(options: PipelineOptions) -> bool:
    """A streaming run on this machine runs on the BundleBasedDirectRunner (set here); False on any other runner
    (the FnApiRunner, Flink, Dataflow...), which run the splittable file watcher instead."""
    standard = options.view_as(StandardOptions)
    if standard.runner in LOCAL_RUNNERS + (LOCAL_STREAMING_RUNNER,):
        standard.runner = LOCAL_STREAMING_RUNNER
        return True
    return False
