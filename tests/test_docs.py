"""Tested examples: every command shown in the README and the tutorial runs, and the documented options and
config files are the real ones."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wirewash.pipeline.cli import _checking_parser, _run_parser, main
from wirewash.pipeline.config import config_to_argv

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TUTORIAL = REPO / "docs" / "tutorial.md"
OPTIONS = REPO / "docs" / "options.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NOISE = ("apitools", "Prism", "Traceback", "WARNING", "Discarding")


def blocks(path: Path, lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(path.read_text()) if kind == lang]


def commands(path: Path) -> list[str]:
    return [line.strip() for body in blocks(path, "bash") for line in body.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def wirewash_exe() -> list[str]:
    script = Path(sys.executable).parent / "wirewash"
    return [str(script)] if script.exists() else [sys.executable, "-m", "wirewash.pipeline.cli"]


def workdir(tmp_path: Path) -> Path:
    """An empty folder with the repository's seeds/ in it, as the README's working directory."""
    (tmp_path / "seeds").symlink_to(REPO / "seeds", target_is_directory=True)
    return tmp_path


def test_readme_shows_the_quick_start():
    shown = commands(README)
    assert shown[:2] == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt -e . && wirewash run --input seeds/ --output lake/",
        'python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt -e ".[test]" && pytest']


def test_readme_install_and_test_commands_run_in_ci():
    """The commands that install or run pytest cannot run inside pytest: .ci/run runs them word for word."""
    ci = (REPO / ".ci" / "run").read_text()
    for line in commands(README):
        if not line.startswith("wirewash "):
            assert line in ci, f".ci/run does not run the README command: {line}"


@pytest.mark.slow
def test_readme_wirewash_commands_run(tmp_path):
    """Each `wirewash ...` of the README, in order, as the installed console script, from a folder holding
    seeds/: exit 0, no Beam noise, no warning."""
    cwd = workdir(tmp_path)
    ran = 0
    for line in commands(README):
        for part in line.split(" && "):
            if not part.startswith("wirewash ") or "--streaming" in part:  # streams: the next test
                continue
            result = subprocess.run(wirewash_exe() + shlex.split(part)[1:], cwd=cwd, capture_output=True,
                                    text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            assert result.returncode == 0, f"{part}\n{result.stderr}"
            assert not any(n in result.stderr for n in NOISE), f"{part}\n{result.stderr}"
            assert (result.stdout if not part.startswith("wirewash run ") else result.stderr).strip(), part
            ran += 1
    assert ran >= 4
    assert (cwd / "lake" / "_REPORT.html").exists()
    assert (cwd / "lake" / "_SUMMARY.json").exists()


@pytest.mark.slow
def test_readme_streaming_command_runs(tmp_path):
    """The README's streaming command, as written, plus a shorter window and poll (given last, so they win)
    so that the test waits seconds, not a minute: a file dropped in incoming/ lands in the lake, Ctrl-C drains."""
    shown = [line for line in commands(README) if line.startswith("wirewash ") and "--streaming" in line]
    if not shown:
        pytest.skip("the README shows no streaming command")
    from tests.helpers import ARTICLE_DE, ARTICLE_EN, write_jsonl

    for line in shown:
        cwd = tmp_path / f"stream{shown.index(line)}"
        (cwd / "incoming").mkdir(parents=True)
        write_jsonl(cwd / "incoming" / "news.jsonl", [{"id": "en", "text": ARTICLE_EN},
                                                      {"id": "de", "text": ARTICLE_DE}, "{broken"])
        argv = wirewash_exe() + shlex.split(line)[1:] + ["--window_seconds", "2", "--poll_interval", "0.3"]
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 90
            summary = cwd / "lake" / "_SUMMARY.json"
            while time.monotonic() < deadline and proc.poll() is None:
                if summary.exists() and json.loads(summary.read_text() or "{}").get("records_read") == 3:
                    break
                time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, f"{line}\n{err[-2000:]}"
        assert "3 records read -> 2 documents, 0 duplicates, 1 rejected" in err, out + err
        assert not any(n in err for n in ("apitools", "Prism", "Traceback")), err


def write_named_files(path: Path, cwd: Path) -> list[str]:
    """TOML blocks whose first line is `# NAME.toml` are files the doc asks the reader to create."""
    names = []
    for body in blocks(path, "toml"):
        first = body.splitlines()[0]
        if re.fullmatch(r"# [\w.-]+\.toml", first):
            (cwd / first[2:]).write_text(body)
            names.append(first[2:])
    return names


@pytest.mark.slow
def test_tutorial_commands_run(tmp_path, monkeypatch, capsys):
    cwd = workdir(tmp_path)
    assert write_named_files(TUTORIAL, cwd) == ["house_rules.toml", "wirewash.toml"]
    monkeypatch.chdir(cwd)
    shown = commands(TUTORIAL)
    assert len(shown) >= 10
    for line in shown:
        argv = shlex.split(line)
        assert argv[0] == "wirewash", line
        assert main(argv[1:]) == 0, line
    out = capsys.readouterr().out
    assert (cwd / "documents.parquet").exists() and (cwd / "lake" / "_REPORT.html").exists()
    assert "MSCK REPAIR TABLE `news`.`documents`;" in out and "WITH PARTITION COLUMNS" in out
    # the house rule removed the two section headings on top of the packaged rules' 13 lines
    assert re.search(r"removed\s*\n-+\s*\n15\b", out)


def test_documented_config_files_are_valid(tmp_path):
    parser = _checking_parser()
    for doc in (README, OPTIONS, TUTORIAL):
        for name in write_named_files(doc, tmp_path):
            if name == "wirewash.toml":
                assert config_to_argv(str(tmp_path / name), parser), doc


def test_every_option_is_documented():
    text = OPTIONS.read_text()
    flags = [f for action in _run_parser()._actions for f in action.option_strings if f.startswith("--")]
    missing = [f for f in flags if f != "--help" and f"`{f}" not in text]
    assert not missing, f"docs/options.md does not describe {missing}"
    for flag in ("--format", "--out", "--limit", "--dialect", "--location", "--schema"):
        assert f"`{flag}" in text
