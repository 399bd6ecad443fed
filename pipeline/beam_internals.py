"""The private parts of Beam (2.62) that wirewash uses, each where Beam has no public API for the job, each
behind one function here and checked by tests/test_beam_internals.py, which fails when a Beam release changes
it. Nothing else in wirewash touches a private Beam name (the DaskRunner subclass in pipeline/runners.py
extends Beam's DaskRunner on its own translation module, apache_beam.runners.dask; see deploy/dask/README.md).
"""
from __future__ import annotations

from typing import Iterable

__all__ = ["given_flags", "beam_argument_parser", "add_runner_short_name", "live_test_stream", "watch_data_channels",
           "data_channel_backlog"]


def given_flags(options) -> tuple[str, ...]:
    """The flags a PipelineOptions was made from (`--name=value`, `--name`, as given). Whether an option was
    typed at all, even with its default value, only shows there: `get_all_options()` gives values, and
    `drop_default=True` drops a typed default too. Beam keeps them in the private `_flags`."""
    return tuple(str(flag) for flag in options._flags)


def beam_argument_parser() -> type:
    """Beam's ArgumentParser subclass. Beam's option classes declare some flags with its
    `add_value_provider_argument`, so a parser that must know every Beam option (the CLI's checking parser)
    has to be one; Beam exports it only as the private `_BeamArgumentParser`."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    return _BeamArgumentParser


def add_runner_short_name(name: str, path: str) -> None:
    """Makes `--runner=<name>` resolve to the runner class at the dotted `path` (case-insensitive, as Beam's
    own short names). Beam reads short names from the private `_RUNNER_MAP`, with no public hook to add one."""
    from apache_beam.runners import runner

    runner._RUNNER_MAP.setdefault(name.lower(), path)


def live_test_stream(events: Iterable, coder):
    """A TestStream whose events are produced while the pipeline runs (the local streaming file watch).
    `TestStream(events=...)` copies its events into a list, which an endless generator never finishes; the
    DirectRunner's evaluator reads the private `_events` lazily, so the events are set there. Run the pipeline
    with `run(test_runner_api=False)`: a runner API round trip would list the events too."""
    from apache_beam.testing.test_stream import TestStream

    stream = TestStream(coder=coder)
    stream._events = events
    return stream


_CHANNELS = None  # the data channels made since `watch_data_channels` (a WeakSet: a closed channel drops out)


def watch_data_channels() -> None:
    """From now on, every Beam data channel this process makes is remembered, for `data_channel_backlog`
    (call it before the harness starts; once is enough). Beam hands its channels to no public registry, so its
    private base class `_GrpcDataChannel` is wrapped at construction. They used to be found by walking
    `gc.get_objects()` from the measuring thread, which can hand out a tuple that the worker's thread is still
    building (`tuple(generator)`): its resize then fails, `SystemError: bad argument to internal function`,
    and a measured run died of its measurement."""
    import weakref

    from apache_beam.runners.worker.data_plane import _GrpcDataChannel

    global _CHANNELS
    if _CHANNELS is not None:
        return
    _CHANNELS = channels = weakref.WeakSet()
    made = _GrpcDataChannel.__init__

    def __init__(self, *args, **kwargs):
        made(self, *args, **kwargs)
        channels.add(self)

    _GrpcDataChannel.__init__ = __init__


def data_channel_backlog() -> tuple[int, int]:
    """(messages, bytes) waiting in this process's Fn API data channels made since `watch_data_channels`:
    outputs not yet sent to the runner, inputs received and not yet read (measurement only: `bench/memory.py
    --worker_heap`). Beam keeps them in the private queues `_to_send` and `_received` of its `_GrpcDataChannel`s."""
    messages = size = 0
    for channel in list(_CHANNELS or ()):
        queues = [channel._to_send] + list(channel._received.values())
        for waiting in queues:
            with waiting.mutex:
                items = list(waiting.queue)
            messages += len(items)
            size += sum(item.ByteSize() for item in items if hasattr(item, "ByteSize"))
    return messages, size
