"""Beam's SDK worker for wirewash's local multi-process runs, without Beam's start-up noise on stderr.

`python -m pipeline.worker` is what `resolve_runner` asks the FnApiRunner to start, once per worker process,
instead of `python -m apache_beam.runners.worker.sdk_worker_main`. Same worker; only its own stderr is
filtered: the import-time "apitools not found" and the start-up INFO/WARNING lines stay hidden, errors still
show. Everything the worker logs also reaches the launching process through Beam's logging service.
"""
from __future__ import annotations

import logging
import sys


def _quiet_stderr() -> None:
    # Before apache_beam is imported: its import calls logging.warning(), which would otherwise install a
    # stderr handler at WARNING on the root logger (logging.basicConfig).
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("%(levelname)s wirewash worker %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def main() -> None:
    _quiet_stderr()
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
