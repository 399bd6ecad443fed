"""Quality benchmark: generate a corpus from a pool, run the real CLI on it, score the lake, print the table.

    python bench/quality.py --pool ../shared/corpus --n 20000 [--seed 7] [--work DIR] [--no-extraction]
                            [--boilerplate-half a|b]

Steps (each one a subprocess, so this measures exactly what a user runs):
1. `make_corpus.py --pool POOL --n N --seed S` (found in POOL/../tools/, or --tools) -> corpus + truth;
   with `--boilerplate-half a|b`, only that fixed half of the boilerplate wordings is injected (issue 20:
   fit on one half, score on the other);
2. `wirewash run --input corpus --output lake` (python -m wirewash.pipeline.cli, this checkout's interpreter);
3. `score_lake.py corpus corpus truth lake --json`;
4. unless --no-extraction: `score_lake.py extraction-input POOL pages.jsonl`, `wirewash run` on the pages,
   `score_lake.py extraction POOL lake --json`.
Prints one row per figure of issue 3 (measured, target, pass/fail), and writes the scores as JSON to
WORK/quality.json. Exits 0 whether targets pass or not (it is a measurement); 2 when a step fails.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (label, how to read it from the scores, comparison, target)
TARGETS = [
    ("accounted", lambda c, e: c.get("accounted"), "==", True),
    ("good_lost", lambda c, e: c.get("good_lost"), "<=", 0),
    ("malformed_rejected", lambda c, e: c.get("malformed_rejected"), ">=", 0.99),
    ("good_rejected", lambda c, e: c.get("good_rejected"), "<=", 0.002),
    ("boilerplate_removed", lambda c, e: c.get("boilerplate_removed"), ">=", 0.97),
    ("content_kept", lambda c, e: c.get("content_kept"), ">=", 0.99),
    ("lang_accuracy", lambda c, e: c.get("lang_accuracy"), ">=", 0.99),
    ("lang_macro_accuracy", lambda c, e: c.get("lang_macro_accuracy"), ">=", 0.95),
    ("exact_recall", lambda c, e: c.get("exact_recall"), ">=", 0.99),
    ("dup_recall near>=0.8", lambda c, e: (c.get("dup_recall") or {}).get("near>=0.8"), ">=", 0.97),
    ("dup_recall near0.5-0.8", lambda c, e: (c.get("dup_recall") or {}).get("near0.5-0.8"), ">=", 0.85),
    ("false_merge_rate", lambda c, e: c.get("false_merge_rate"), "<=", 0.001),
    ("extraction aeb", lambda c, e: e.get("aeb"), ">=", 0.965),
    ("extraction fundus", lambda c, e: e.get("fundus"), ">=", 0.965),
    ("extraction snippets_right", lambda c, e: e.get("snippets_right"), ">=", 0.94),
]


def verdict(value, op: str, target) -> str:
    if value is None:
        return "n/a"
    ok = value == target if op == "==" else value >= target if op == ">=" else value <= target
    return "pass" if ok else "FAIL"


def run(cmd: list, what: str) -> str:
    started = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n")
        raise SystemExit(2)
    print(f"  {what}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return proc.stdout


def wirewash(input_path: Path, lake: Path) -> list:
    return [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", input_path, "--output", lake, "--overwrite",
            "--quiet"]


def table(corpus: dict, extraction: dict) -> list[tuple]:
    rows = []
    for label, read, op, target in TARGETS:
        value = read(corpus, extraction)
        rows.append((label, value, f"{op} {target}", verdict(value, op, target)))
    return rows


def render(rows: list[tuple]) -> str:
    lines = ["| figure (score_lake.py) | measured | target | |", "|---|---|---|---|"]
    lines += [f"| {label} | {value} | {target} | {ok} |" for label, value, target, ok in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(REPO.parent / "shared" / "corpus"), help="pool folder")
    parser.add_argument("--tools", default=None, help="folder with make_corpus.py and score_lake.py "
                                                       "(default: POOL/../tools)")
    parser.add_argument("--n", type=int, default=20_000, help="records to generate (default 20000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", default=None, help="working folder (default: a new temporary folder)")
    parser.add_argument("--no-extraction", action="store_true", help="skip the extraction pages")
    parser.add_argument("--boilerplate-half", choices=("a", "b"), default=None,
                        help="inject only this half of the boilerplate wordings (make_corpus.py)")
    args = parser.parse_args(argv)

    pool = Path(args.pool).resolve()
    tools = Path(args.tools).resolve() if args.tools else pool.parent / "tools"
    if not (pool / "news").is_dir() or not (tools / "make_corpus.py").exists():
        parser.error(f"no pool at {pool} or no make_corpus.py in {tools}")
    work = Path(args.work or tempfile.mkdtemp(prefix="wirewash-quality-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus, truth, lake = work / "corpus.jsonl", work / "truth.jsonl", work / "lake"
    print(f"quality bench: pool {pool}, n {args.n}, seed {args.seed}, work {work}", file=sys.stderr)

    half = ["--boilerplate-half", args.boilerplate_half] if args.boilerplate_half else []
    run([sys.executable, tools / "make_corpus.py", "--pool", pool, "--n", args.n, "--seed", args.seed,
         "--out", corpus, "--truth", truth, "--quiet", *half], "make_corpus")
    run(wirewash(corpus, lake), f"wirewash run ({args.n} records)")
    corpus_scores = json.loads(run([sys.executable, tools / "score_lake.py", "corpus", corpus, truth, lake,
                                    "--json"], "score corpus"))
    extraction_scores = {}
    if not args.no_extraction:
        pages, pages_lake = work / "pages.jsonl", work / "pages-lake"
        run([sys.executable, tools / "score_lake.py", "extraction-input", pool, pages], "extraction input")
        run(wirewash(pages, pages_lake), "wirewash run (extraction pages)")
        extraction_scores = json.loads(run([sys.executable, tools / "score_lake.py", "extraction", pool,
                                            pages_lake, "--json"], "score extraction"))

    rows = table(corpus_scores, extraction_scores)
    (work / "quality.json").write_text(json.dumps(
        {"pool": str(pool), "n": args.n, "seed": args.seed, "boilerplate_half": args.boilerplate_half,
         "corpus": corpus_scores,
         "extraction": extraction_scores, "table": rows}, indent=2))
    print(render(rows))
    print(f"\nall scores: {work / 'quality.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
