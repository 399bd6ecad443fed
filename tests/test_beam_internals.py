"""pipeline/beam_internals.py: each private Beam part wirewash uses still does what wirewash needs. A Beam
release that renames or changes one fails here, by name, rather than somewhere in a run."""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import create_runner
from apache_beam.testing.test_stream import ElementEvent, WatermarkEvent
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Timestamp

from wirewash.pipeline.beam_internals import add_runner_short_name, beam_argument_parser, given_flags, live_test_stream

REPO = Path(__file__).resolve().parents[1]


def test_given_flags_are_the_flags_as_typed():
    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers", "0", "--streaming"])
    assert given_flags(options) == ("--runner=DirectRunner", "--direct_num_workers", "0", "--streaming")
    # the same list behind every view, and a typed default shows (get_all_options could not tell it apart)
    assert given_flags(options.view_as(StandardOptions)) == given_flags(options)
    assert "--runner=DirectRunner" in given_flags(PipelineOptions.from_dictionary({"runner": "DirectRunner"}))
    assert given_flags(PipelineOptions([])) == ()


def test_beam_argument_parser_knows_every_beam_option():
    parser_class = beam_argument_parser()
    assert issubclass(parser_class, argparse.ArgumentParser)
    parser = parser_class(add_help=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # some call add_value_provider_argument, which only Beam's parser has
    known = set(vars(parser.parse_args([])))
    assert {"runner", "streaming", "direct_num_workers", "temp_location"} <= known


def test_runner_short_name_resolves():
    add_runner_short_name("WirewashTestFnApi", "apache_beam.runners.portability.fn_api_runner.FnApiRunner")
    assert type(create_runner("WirewashTestFnApi")).__name__ == "FnApiRunner"
    assert type(create_runner("wirewashtestfnapi")).__name__ == "FnApiRunner"


_SEEN: list = []


def _collect(x):
    _SEEN.append(x)


def test_live_test_stream_reads_its_events_lazily():
    """An endless event source: the DirectRunner must pull events as it goes (a list() of it never ends), and
    stop at the source's own end, here after three elements."""
    pulled = []

    def events():
        for i in itertools.count():
            pulled.append(i)
            if i == 3:
                return
            yield ElementEvent([window.TimestampedValue(f"e{i}", i)])
            yield WatermarkEvent(Timestamp.of(i))

    class Lazy:
        """TestStream adds its own events with `+`; an endless source keeps them lazy the same way."""

        def __init__(self, parts):
            self.parts = parts

        def __bool__(self):
            return True

        def __add__(self, other):
            return Lazy(self.parts + [other])

        def __radd__(self, other):
            return Lazy([other] + self.parts)

        def __iter__(self):
            return itertools.chain.from_iterable(self.parts)

    _SEEN.clear()
    options = PipelineOptions(["--streaming"])
    options.view_as(StandardOptions).runner = "BundleBasedDirectRunner"
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | live_test_stream(Lazy([events()]), PickleCoder()) | beam.Map(_collect)
    assert pulled == []  # nothing read while building (TestStream(events=...) would list them all here)
    pipeline.run(test_runner_api=False).wait_until_finish()
    assert sorted(_SEEN) == ["e0", "e1", "e2"] and pulled == [0, 1, 2, 3]


def test_argparse_actions_listing():
    """Not Beam: argparse has no public listing of a parser's options either; pipeline/config.py's `_actions`
    is the one place that reads its private `_actions`."""
    from wirewash.pipeline.config import _actions

    parser = argparse.ArgumentParser()
    parser.add_argument("--near_threshold", "--nt", type=float, default=0.5)
    parser.add_argument("--quiet", action="store_true")
    actions = _actions(parser)
    assert set(actions) == {"help", "near_threshold", "nt", "quiet"}
    assert actions["nt"] is actions["near_threshold"] and actions["near_threshold"].type is float


def test_data_channel_backlog_sees_what_waits_in_a_channel(monkeypatch):
    """`data_channel_backlog` finds the data channels made since `watch_data_channels` and reads their private
    queues: a renamed queue or class would make it report 0 for ever, and this fails. It never walks the
    collector's objects (from a measuring thread, that can break a tuple the worker is building)."""
    import gc

    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.worker.data_plane import _GrpcDataChannel

    from wirewash.pipeline.beam_internals import data_channel_backlog, watch_data_channels

    def refused(*args):
        raise AssertionError("gc.get_objects() called")

    watch_data_channels()
    watch_data_channels()  # twice: still one wrapper
    monkeypatch.setattr(gc, "get_objects", refused)
    before, _ = data_channel_backlog()
    channel = _GrpcDataChannel()
    channel._to_send.put(beam_fn_api_pb2.Elements.Data(instruction_id="1", transform_id="t", data=b"x" * 4096))
    channel._received["2"].put(beam_fn_api_pb2.Elements.Data(instruction_id="2", transform_id="t", data=b"y" * 10))
    messages, size = data_channel_backlog()
    assert messages == before + 2 and size >= 4096 + 10
    del channel
    assert data_channel_backlog()[0] == before  # a channel gone drops out
