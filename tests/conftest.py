"""Shared fixtures: the repository's seeds, the optional ../shared/ folder, and a quiet Beam."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from wirewash.pipeline.cli import configure_logging

configure_logging(verbose=False)  # before apache_beam is imported anywhere: hides "apitools not found"

from wirewash.pipeline.runners import register_fnapi_runner  # noqa: E402

register_fnapi_runner()  # tests build pipelines with runner="FnApiRunner" themselves

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
SHARED = Path(os.environ.get("WIREWASH_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    return SEEDS


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared/ (or $WIREWASH_SHARED); tests that need it skip with a message when it is absent."""
    if not (SHARED / "corpus" / "MANIFEST.json").exists():
        pytest.skip(f"needs the shared corpus at {SHARED} (set WIREWASH_SHARED); a plain clone does not have it")
    return SHARED


@pytest.fixture(autouse=True)
def _quiet_beam():
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    yield


@pytest.fixture(autouse=True, scope="session")
def _temp_folders_under_pytest(tmp_path_factory):
    """Temp folders of this session (and of the processes it starts) go under pytest's own temp tree, which
    pytest prunes: a test's TestPipeline() tries Beam's Prism job server, whose failed start leaves its
    beam-temp* folder behind, and a run a test kills on purpose cannot clean up after itself."""
    folder = str(tmp_path_factory.mktemp("tmp"))
    before = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = folder
    os.environ["TMPDIR"] = folder
    yield
    tempfile.tempdir = before[0]
    if before[1] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before[1]


@pytest.fixture(scope="session")
def dask_scheduler(tmp_path_factory):
    """`tcp://127.0.0.1:PORT` of a dask scheduler with two single-threaded workers, each its own process; one
    cluster for the session (tests/test_dedup.py and tests/test_runners.py), stopped at its end."""
    pytest.importorskip("distributed", reason="needs the dask extra: pip install -e \".[dask]\"")
    from distributed import Client

    from tests.test_runners import START_TIMEOUT, free_port, service, stop, wait_for_port

    logs = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [service(["-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                     logs / "scheduler.log")]
    try:
        wait_for_port(port, procs[0], "dask scheduler")
        for i in range(2):
            procs.append(service(["-m", "dask", "worker", address, "--nthreads", "1", "--no-dashboard",
                                  "--host", "127.0.0.1", "--name", f"w{i}"], logs / f"worker{i}.log"))
        with Client(address, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
        yield address
    finally:
        stop(reversed(procs))
