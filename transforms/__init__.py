"""wirewash's Beam stages. Importing the package (or `pipeline`) makes the short runner name `FnApiRunner`
known to Beam 2.62 (the release pinned for Flink and Kafka, see docs/streaming.md), as later releases do."""
from apache_beam.runners import runner as _beam_runner

_beam_runner._RUNNER_MAP.setdefault("fnapirunner", "apache_beam.runners.portability.fn_api_runner.FnApiRunner")
