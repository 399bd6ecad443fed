"""Coverage-guided fuzzing of the reader with atheris (libFuzzer): raw bytes in, the same checks as
tests/test_fuzz_inputs.py out (no exception escapes; the records emitted equal the non-blank lines counted
here, apart from the reader; the file is read to its end; every text field is valid UTF-8).

    pip install -e ".[test,fuzz]"
    python bench/fuzz_reader.py -atheris_runs=200000          # libFuzzer flags pass through
    python bench/fuzz_reader.py bench/_work/fuzz-corpus/      # keep and grow a corpus of interesting inputs

The first byte of an input picks the file kind (.jsonl, .jsonl.gz, .txt, .html); the rest is the file.
A failing input is written by libFuzzer as `crash-<hash>`; rerun it with `python bench/fuzz_reader.py FILE`.
Not part of the test suite: the hypothesis fuzzers there run in bounded time, this one until stopped.
"""
from __future__ import annotations

import atexit
import gzip
import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["wirewash.pipeline.io", "wirewash.pipeline.input_files",
                                         "wirewash.pipeline.records", "wirewash.pipeline.tally"]):
    from wirewash.pipeline.input_files import InputFile, format_of
    from wirewash.pipeline.io import parse_file
    from wirewash.pipeline.tally import expected_records, read_whole

from tests.test_fuzz_inputs import MAX_RECORD_BYTES, check_records, count_records  # noqa: E402

KINDS = ("f.jsonl", "f.jsonl.gz", "f.txt", "f.html")
FOLDER = tempfile.mkdtemp(prefix="wirewash-fuzz-")
atexit.register(shutil.rmtree, FOLDER, True)


def one_input(data: bytes) -> None:
    if not data:
        return
    name, body = KINDS[data[0] % len(KINDS)], data[1:]
    path = os.path.join(FOLDER, name)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(body, mtime=0) if name.endswith(".gz") else body)
    tallies = []
    out = list(parse_file(InputFile(path, name, format_of(name)), MAX_RECORD_BYTES, on_tally=tallies.append))
    (tally,) = tallies
    assert read_whole(tally), tally
    assert len(out) == expected_records(tally), (out, tally)
    assert len(out) == (count_records(body) if name.startswith("f.jsonl") else 1), (out, tally)
    check_records(out, name)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
