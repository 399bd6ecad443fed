"""Flex Template entry point: builds the wirewash pipeline from the template parameters and submits it.

The Flex Template launcher runs `python main.py --name=value ...` for every parameter given at launch.
Beam's boolean flags (`--overwrite`, `--no_near_dedup`, `--streaming`) take no value, so `--flag=true`
becomes `--flag` and `--flag=false` is dropped. The job is submitted and this program returns: it does not
wait (the launcher would time out on a streaming job) and does not read the summary, which the job writes
into the lake when it ends.
"""
from __future__ import annotations

import sys

BOOLEAN_FLAGS = ("overwrite", "append", "no_near_dedup", "streaming")


def normalize_flags(argv: list[str]) -> list[str]:
    """`--flag=true` -> `--flag`, `--flag=false` -> nothing, for Beam's value-less boolean flags."""
    out = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        if sep and name.lstrip("-") in BOOLEAN_FLAGS:
            if value.strip().lower() in ("true", "1", "yes"):
                out.append(name)
            elif value.strip().lower() not in ("false", "0", "no", ""):
                raise SystemExit(f"wirewash: error: {name} takes true or false, got {value!r}")
            continue
        out.append(arg)
    return out


def run(argv: list[str]) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    from wirewash.pipeline.build import build_pipeline
    from wirewash.pipeline.cli import configure_logging

    configure_logging(verbose=False)
    options = PipelineOptions(normalize_flags(argv))
    build_pipeline(options).run()


if __name__ == "__main__":
    run(sys.argv[1:])
