"""bench/quality.py: the table logic, and one small real run on the shared pool (skipped without it)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "quality.py"
spec = importlib.util.spec_from_file_location("quality_bench", BENCH)
quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quality)


def test_verdicts_and_table():
    assert quality.verdict(0.98, ">=", 0.97) == "pass"
    assert quality.verdict(0.96, ">=", 0.97) == "FAIL"
    assert quality.verdict(0.002, "<=", 0.001) == "FAIL"
    assert quality.verdict(None, ">=", 0.5) == "n/a"
    rows = quality.table({"accounted": True, "dup_recall": {"near>=0.8": 0.99}}, {"aeb": 0.9})
    by_label = {row[0]: row for row in rows}
    assert by_label["accounted"][3] == "pass"
    assert by_label["dup_recall near>=0.8"][1:] == (0.99, ">= 0.97", "pass")
    assert by_label["extraction aeb"][3] == "FAIL"
    assert by_label["exact_recall"][3] == "n/a"
    assert quality.render(rows).splitlines()[0].startswith("| figure")


@pytest.mark.slow
def test_small_real_run(shared_dir, tmp_path, capsys):
    assert quality.main(["--pool", str(shared_dir / "corpus"), "--n", "150", "--seed", "3",
                         "--work", str(tmp_path), "--no-extraction"]) == 0
    out = capsys.readouterr().out
    assert "| accounted | True | == True | pass |" in out
    assert "| good_lost | 0 | <= 0 | pass |" in out
    assert (tmp_path / "quality.json").exists()
