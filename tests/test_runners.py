"""The same pipeline on other runners gives the same lake: PortableRunner (Beam's own job service, LOOPBACK),
Beam's Flink job server (an embedded Flink cluster, jars from Maven Central; skipped without java and mvn),
the DaskRunner on a real dask.distributed cluster (a scheduler and two workers, separate processes), and the
multi-process DirectRunner. Compared: document ids, texts, languages, hashes; duplicate decisions; rejections.

Every service is started on a free loopback port and stopped at the end of the module (the dask cluster:
once per session, tests/conftest.py, shared with tests/test_dedup.py).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from wirewash.pipeline.cli import main
from wirewash.pipeline.runners import DASK_RUNNER, UnsupportedRunnerError
from tests.helpers import lake_rows, python_output, summary, write_jsonl
from tests.test_pipeline import MIXED

REPO = Path(__file__).resolve().parents[1]
INGESTED_AT = "2024-01-01T00:00:00Z"
START_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on port {port} within {START_TIMEOUT} s")


def stop(procs) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _die_with_parent() -> None:
    """Linux: the service gets SIGTERM when the test process dies, even killed, so nothing is left running."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def service(args, log: Path) -> subprocess.Popen:
    handle = open(log, "wb")
    return subprocess.Popen([sys.executable, *args], stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)


@pytest.fixture(scope="module")
def job_endpoint(tmp_path_factory):
    """`localhost:PORT` of Beam's local job service (what Flink's and Spark's job servers look like)."""
    port = free_port()
    proc = service(["-m", "apache_beam.runners.portability.local_job_service_main", f"--port={port}"],
                   tmp_path_factory.mktemp("jobs") / "job_service.log")
    try:
        wait_for_port(port, proc, "Beam job service")
        yield f"localhost:{port}"
    finally:
        stop([proc])


@pytest.fixture(scope="module")
def flink_endpoint(tmp_path_factory):
    """Beam's Flink job server with an embedded Flink (deploy/services/services.py); `.address` is `127.0.0.1:PORT`."""
    from tests.jvm_services import services

    server = services().start_job_server(tmp_path_factory.mktemp("flink"))
    try:
        yield server
    finally:
        server.stop()


def runner_args(name: str, dask_scheduler: str = "", job_endpoint: str = "") -> list[str]:
    return {
        "direct": [],
        "multiprocess": ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        "portable": ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}", "--environment_type=LOOPBACK"],
        "dask": ["--runner=DaskRunner", f"--dask_client_address={dask_scheduler}"],
    }[name]


def build_lake(inputs: list[Path], lake: Path, extra: list[str]) -> Path:
    argv = ["run", "--output", str(lake), "--quiet", "--ingested_at", INGESTED_AT, *extra]
    for path in inputs:
        argv += ["--input", str(path)]
    assert main(argv) == 0, f"run failed: {extra}"
    return lake


def decisions(lake: Path) -> dict:
    """Everything that must not depend on the runner, in a stable order."""
    return {
        "documents": sorted(map(tuple, (r.values() for r in lake_rows(
            lake, "documents", "doc_id, text, title, lang, date, content_hash, source_location, "
                               "boilerplate_lines_removed")))),
        "duplicates": sorted(map(tuple, (r.values() for r in lake_rows(
            lake, "duplicates", "doc_id, duplicate_of, kind, similarity, source_location")))),
        "rejected": sorted(map(tuple, (r.values() for r in lake_rows(
            lake, "rejected", "source_location, stage, reason, doc_id")))),
        # file names and run records (ids, times) differ from run to run; what the files hold is compared above
        "summary": {k: v for k, v in summary(lake).items() if k not in ("files_rows", "files", "index", "runs")},
    }


def assert_same(expected: dict, actual: dict, runner: str) -> None:
    for part in ("documents", "duplicates", "rejected", "summary"):
        assert actual[part] == expected[part], f"{runner}: {part} differ from the DirectRunner's"


# ---------------------------------------------------------------------------------------------------------
# A corpus the repository can build: the seeds, plus copies, near copies, HTML and broken records
# ---------------------------------------------------------------------------------------------------------

def synthesized_corpus(folder: Path) -> list[Path]:
    """The seed files as they are, a JSONL of their copies (exact with boilerplate and Unicode changes,
    near with a changed ending, HTML pages, a reused id) and the mixed records of test_pipeline."""
    seeds = sorted((REPO / "seeds").glob("*.txt"))
    records = []
    for i, path in enumerate(seeds):
        text = path.read_text(encoding="utf-8")
        paragraphs = [p for p in text.split("\n") if p.strip()]
        day = f"2023-06-{10 + i:02d}"
        records += [
            {"id": f"orig{i}", "url": f"https://a.example/{i}", "published": f"{day}T08:00:00Z", "text": text},
            {"id": f"copy{i}", "published": f"{day}T09:00:00Z",
             "text": "Sign up now: Get our newsletters delivered to your inbox\n" + text + "\nRead more: other news"},
            {"id": f"nfd{i}", "published": f"{day}T10:00:00Z", "text": unicodedata.normalize("NFD", text)},
            {"id": f"early{i}", "published": f"{day}T07:00:00Z", "text": text.replace("\n", "\n\n")},
            {"id": f"near{i}", "published": f"{day}T11:00:00Z",
             "text": "\n".join(paragraphs[:-1] + ["The ministry declined to comment further on the talks."])},
            {"id": f"html{i}", "published": f"{day}T12:00:00Z",
             "html": "<html lang='en'><body><nav>Home | World</nav><article>" +
                     "".join(f"<p>{p}</p>" for p in paragraphs) + "</article><footer>Contact</footer></body></html>"},
            {"id": f"orig{i}", "text": "A different story that reuses an id already taken. " * 5},
            {"id": f"brief{i}", "text": f"Short note number {i} about the weather in the capital today."},
        ]
    records += [r for r in MIXED]
    return [write_jsonl(folder / "copies.jsonl", records), REPO / "seeds"]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    inputs = synthesized_corpus(folder)
    expected = decisions(build_lake(inputs, folder / "lake-direct", runner_args("direct")))
    return folder, inputs, expected


def test_small_corpus_is_not_trivial(small_corpus):
    """The comparison below means something only if the corpus exercises every decision."""
    _, _, expected = small_corpus
    kinds = {d[2] for d in expected["duplicates"]}
    reasons = {r[2] for r in expected["rejected"]}
    assert kinds == {"exact", "near"}, kinds
    assert {"duplicate_id", "bad_json"} <= reasons, reasons
    assert expected["summary"]["reconciled"] and expected["summary"]["records_read"] == 57
    assert len(expected["documents"]) >= 8


@pytest.mark.slow
def test_portable_runner_same_lake(small_corpus, job_endpoint):
    folder, inputs, expected = small_corpus
    lake = build_lake(inputs, folder / "lake-portable", runner_args("portable", job_endpoint=job_endpoint))
    assert_same(expected, decisions(lake), "PortableRunner")


@pytest.mark.slow
def test_flink_runner_same_lake(small_corpus, flink_endpoint):
    """Beam's Flink job server (embedded Flink cluster, Python steps LOOPBACK) writes the DirectRunner's lake."""
    folder, inputs, expected = small_corpus
    lake = build_lake(inputs, folder / "lake-flink", runner_args("portable", job_endpoint=flink_endpoint.address))
    assert_same(expected, decisions(lake), "Flink")
    assert not (lake / "_staging").exists()
    # The job server stages each job's files in its own working folder (removed with it), not $TMPDIR.
    assert (flink_endpoint.log.parent / "artifacts").is_dir()


@pytest.mark.slow
def test_dask_runner_same_lake(small_corpus, dask_scheduler):
    folder, inputs, expected = small_corpus
    lake = build_lake(inputs, folder / "lake-dask", runner_args("dask", dask_scheduler=dask_scheduler))
    assert_same(expected, decisions(lake), "DaskRunner")
    assert not (lake / "_staging").exists()


@pytest.mark.slow
def test_multiprocess_direct_runner_same_lake(small_corpus):
    folder, inputs, expected = small_corpus
    lake = build_lake(inputs, folder / "lake-mp", runner_args("multiprocess"))
    assert_same(expected, decisions(lake), "multi-process DirectRunner")


@pytest.mark.slow
@pytest.mark.shared
def test_generated_corpus_same_lake_on_every_runner(shared_dir, tmp_path, dask_scheduler, job_endpoint):
    """Messy records from ../shared/tools/make_corpus.py (1,000 by default, to keep CI short; set
    WIREWASH_EQUIV_RECORDS=2000 or more for a longer check) on the Portable and Dask runners (the
    multi-process DirectRunner, the same FnApiRunner code in worker processes, is checked on the small corpus)."""
    n = int(os.environ.get("WIREWASH_EQUIV_RECORDS", "1000"))
    corpus = tmp_path / "corpus.jsonl"
    subprocess.run([sys.executable, str(shared_dir / "tools" / "make_corpus.py"), "--pool", str(shared_dir / "corpus"),
                    "--n", str(n), "--seed", "11", "--out", str(corpus), "--truth", str(tmp_path / "truth.jsonl"),
                    "--quiet"], check=True, timeout=120)
    expected = decisions(build_lake([corpus], tmp_path / "lake-direct", runner_args("direct")))
    assert expected["summary"]["records_read"] == n and expected["summary"]["reconciled"]
    assert expected["summary"]["duplicates"] > n // 20 and expected["summary"]["rejected"] > 0
    for name in ("portable", "dask"):
        lake = build_lake([corpus], tmp_path / f"lake-{name}", runner_args(name, dask_scheduler, job_endpoint))
        assert_same(expected, decisions(lake), name)


# ---------------------------------------------------------------------------------------------------------
# The DaskRunner: the Beam features wirewash's batch pipeline needs, and clear refusals
# ---------------------------------------------------------------------------------------------------------

class _SplitOddEven(beam.DoFn):
    def process(self, x):
        yield beam.pvalue.TaggedOutput("odd", x) if x % 2 else x


class _CountInFinishBundle(beam.DoFn):
    def start_bundle(self):
        self.n = 0

    def process(self, x):
        self.n += 1

    def finish_bundle(self):
        yield WindowedValue(self.n, MIN_TIMESTAMP, [GlobalWindow()])


def _report(_, even, odd, finished, flat, single, total, squares, path):
    Path(path).write_text(json.dumps({"even": sorted(even), "odd": sorted(odd), "finished": finished,
                                      "flat": flat, "single": single, "total": total,
                                      "squares": sorted(squares.items())}))


# Beam's Create translation (kept by wirewash's DaskRunner) cuts n elements into n bundles up to n = 100 (n/2
# at 300): the cluster's time grows with the bundles, not the work (300 elements: 150 bundles, 36 s on a loaded
# machine). 24 elements give 24 bundles, a dozen per worker process: enough for every case below (Beam's own
# DaskRunner still gets the multi-output, finish_bundle and shared-receiver cases wrong on them).
FEATURE_ELEMENTS = 24


def features_pipeline(options: PipelineOptions, out: Path, n: int = FEATURE_ELEMENTS) -> beam.Pipeline:
    p = beam.Pipeline(options=options)
    nums = p | "Nums" >> beam.Create(list(range(n)))
    split = nums | "Split" >> beam.ParDo(_SplitOddEven()).with_outputs("odd", main="even")
    even = split["even"] | "ListEven" >> beam.combiners.ToList()
    odd = split["odd"] | "ListOdd" >> beam.combiners.ToList()
    finished = nums | "Finish" >> beam.ParDo(_CountInFinishBundle()) | "SumFinish" >> beam.CombineGlobally(sum)
    flat = ([nums | f"Copy{i}" >> beam.Map(lambda x, i=i: (i, x)) for i in range(6)] | "FlattenMany" >> beam.Flatten()
            | "CountFlat" >> beam.combiners.Count.Globally())
    single = p | "One" >> beam.Create(["only"])
    total = split["even"] | "SumEven" >> beam.CombineGlobally(sum)
    squares = split["odd"] | "Squares" >> beam.Map(lambda x: (x, x * x))
    _ = (p | "Go" >> beam.Create([None]) | "Report" >> beam.Map(
        _report, beam.pvalue.AsSingleton(even), beam.pvalue.AsSingleton(odd), beam.pvalue.AsSingleton(finished),
        beam.pvalue.AsSingleton(flat), beam.pvalue.AsSingleton(single), beam.pvalue.AsSingleton(total),
        beam.pvalue.AsDict(squares), str(out)))
    return p


def assert_features(report: dict, n: int = FEATURE_ELEMENTS) -> None:
    assert report["even"] == list(range(0, n, 2)) and report["odd"] == list(range(1, n, 2))
    assert report["finished"] == n and report["flat"] == 6 * n and report["single"] == "only"
    assert report["total"] == sum(range(0, n, 2))
    assert report["squares"] == [[x, x * x] for x in range(1, n, 2)]


@pytest.mark.slow
def test_dask_runner_features(dask_scheduler, tmp_path):
    """Multi-output ParDo, finish_bundle outputs, AsSingleton/AsDict side inputs, Flatten of many,
    CombineGlobally and ToList on the cluster (Beam's own DaskRunner gets the first two wrong)."""
    out = tmp_path / "report.json"
    options = PipelineOptions([f"--runner={DASK_RUNNER}", f"--dask_client_address={dask_scheduler}"])
    features_pipeline(options, out).run().wait_until_finish()
    assert_features(json.loads(out.read_text()))


def test_dask_runner_refuses_streaming_in_one_sentence(tmp_path, capsys):
    code = main(["run", "--input", str(REPO / "seeds"), "--output", str(tmp_path / "lake"), "--runner=DaskRunner",
                 "--streaming"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("wirewash: error: the DaskRunner runs batch pipelines only") and err.count("\n") == 1
    assert "Traceback" not in err and not (tmp_path / "lake").exists()


class _Stateful(beam.DoFn):
    from apache_beam.transforms.userstate import CombiningValueStateSpec
    SEEN = CombiningValueStateSpec("seen", sum)

    def process(self, kv, seen=beam.DoFn.StateParam(SEEN)):
        seen.add(1)
        yield kv


def test_dask_runner_refuses_state_by_name():
    pytest.importorskip("distributed")
    p = beam.Pipeline(options=PipelineOptions([f"--runner={DASK_RUNNER}"]))
    _ = p | beam.Create([("a", 1)]) | "KeepState" >> beam.ParDo(_Stateful())
    with pytest.raises(UnsupportedRunnerError, match="no state or timers, which KeepState needs"):
        p.run()


def test_dask_runner_refuses_sources_by_name():
    pytest.importorskip("distributed")
    p = beam.Pipeline(options=PipelineOptions([f"--runner={DASK_RUNNER}"]))
    _ = p | "Tick" >> beam.Impulse() | beam.Map(len)
    with pytest.raises(UnsupportedRunnerError, match=r"cannot run Impulse \(Tick\)"):
        p.run()


@pytest.mark.parametrize("name", ["DaskRunner", "dask", "apache_beam.runners.dask.dask_runner.DaskRunner"])
def test_dask_runner_names_map_to_the_fixed_runner(name):
    from apache_beam.options.pipeline_options import StandardOptions

    from wirewash.pipeline.runners import prepare_runner

    options = PipelineOptions([f"--runner={name}"])
    prepare_runner(options)
    assert options.view_as(StandardOptions).runner == DASK_RUNNER
    other = PipelineOptions(["--runner=DataflowRunner", "--streaming"])
    prepare_runner(other)
    assert other.view_as(StandardOptions).runner == "DataflowRunner"


def test_fnapi_runner_short_name_is_known():
    """`--runner=FnApiRunner` works on the pinned Beam through `register_fnapi_runner` (a private Beam map:
    this fails loudly if Beam renames it), and importing the packages alone does not import Beam."""
    code = ("import sys, wirewash.pipeline, wirewash.transforms, wirewash.pipeline.version\n"
            "assert 'apache_beam' not in sys.modules, 'importing the packages imported Beam'\n"
            "from wirewash.pipeline.runners import register_fnapi_runner\n"
            "from apache_beam.runners.runner import create_runner\n"
            "register_fnapi_runner()\n"
            "print(type(create_runner('FnApiRunner')).__name__)\n")
    assert python_output(code).strip() == "FnApiRunner"
