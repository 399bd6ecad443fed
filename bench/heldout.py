"""Held-out boilerplate wording (issue 20): rules "fitted" to one half, scored on the other.

    python bench/heldout.py --work /tmp/heldout [--n 2000] [--sample 12000] [--seed 7] [--no-extraction]
                            [--runs a-b,b-a,all-a,all-b] [--out heldout.json] [--stream-files K]

The packaged rules were written looking at every wording of the dev pool, so a corpus of either
`--boilerplate-half` is wording they have seen. To measure what a user's unfamiliar wording gets, this
emulates rules written from one half only: a packaged pattern that matches some injected line of half B
(in a `--sample`-record truth sample) but none of half A is one that only B's wording motivated, and is
left out of "the rules fitted to A". Then, per direction:

1. `make_corpus.py --boilerplate-half B --n N` -> corpus + truth;
2. a copy of this checkout whose `transforms/rules/boilerplate.toml` holds the rules fitted to A, run with
   `PYTHONPATH` (worker processes inherit it): `wirewash run`;
3. `score_lake.py corpus`;
4. unless `--no-extraction`: the pool's extraction pages (`score_lake.py extraction-input`) run through the
   same checkout and scored (`score_lake.py extraction`: aeb, fundus, snippets_right).

Prints boilerplate_removed, content_kept and the extraction figures for a->b, b->a, and both halves with all
rules (`--runs` picks some of them); writes WORK/heldout.json (`--out`) with every score of each run.

With `--stream-files K`, step 2 is a stream instead (`wirewash run --streaming` on a watched folder): the
corpus is cut into K files, moved into the folder one after the other (each once the stream has read the one
before), then the stream is drained (SIGINT) and scored the same way. What the cleaner learns, it learns as the
files arrive (`LearnFromStream`). The extraction pages stay a batch run. Everything the cleaner learns from the run (repeated lines, shapes) is untouched: only the
phrase list is fitted.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def toml_rules(tables: dict) -> str:
    """[rules.NAME] tables back to TOML text (strings as JSON strings, valid TOML basic strings)."""
    out = []
    for name, table in tables.items():
        out.append(f"[rules.{name}]")
        for key, value in table.items():
            if isinstance(value, list):
                out.append(f"{key} = [" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "]")
            else:
                out.append(f"{key} = {json.dumps(value)}")
        out.append("")
    return "\n".join(out)


def injected_lines(truth: Path) -> set:
    lines = set()
    with open(truth, encoding="utf-8") as handle:
        for row in handle:
            lines.update(json.loads(row)["injected_boilerplate_lines"])
    return lines


def fitted_tables(tables: dict, seen: set, unseen: set) -> tuple[dict, int]:
    """The rule tables without the patterns that match a line of `unseen` and none of `seen`."""
    from wirewash.transforms.boilerplate import fold_line
    from wirewash.transforms.linear_regex import LinearPattern

    seen_f = [fold_line(line) for line in seen]
    unseen_f = [fold_line(line) for line in unseen]
    dropped = 0
    fitted = {}
    for name, table in tables.items():
        new = {}
        for key, value in table.items():
            if not isinstance(value, list):
                new[key] = value
                continue
            kept = []
            for pattern in value:
                compiled = LinearPattern(pattern)
                hits_unseen = any(compiled.search(line) for line in unseen_f)
                if hits_unseen and not any(compiled.search(line) for line in seen_f):
                    dropped += 1
                    continue
                kept.append(pattern)
            if kept:
                new[key] = kept
        if any(isinstance(v, list) for v in new.values()):
            fitted[name] = new
    return fitted, dropped


def run(cmd, env=None, cwd=None) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        sys.stderr.write(f"{cmd[:3]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}\n")
        raise SystemExit(2)
    return proc.stdout


def summary(lake: Path) -> dict:
    try:
        return json.loads((lake / "_SUMMARY.json").read_text())
    except (OSError, ValueError):
        return {}


def stream_run(corpus: Path, lake: Path, watch: Path, files: int, env: dict, cwd: Path) -> None:
    """`wirewash run --streaming` on `watch`, fed `corpus` in `files` parts one after the other, then drained."""
    rows = corpus.read_bytes().splitlines(keepends=True)
    if watch.exists():
        shutil.rmtree(watch)
    watch.mkdir(parents=True)
    if lake.exists():
        shutil.rmtree(lake)
    proc = subprocess.Popen(["nice", "-n", "10", sys.executable, "-m", "wirewash.pipeline.cli", "run", "--streaming",
                             "--input", f"{watch}/*.jsonl", "--output", str(lake), "--window_seconds", "5",
                             "--quiet"], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        step = -(-len(rows) // files)
        for part in range(files):
            chunk = rows[part * step:(part + 1) * step]
            tmp = watch / f".part-{part:03d}.tmp"
            tmp.write_bytes(b"".join(chunk))
            os.rename(tmp, watch / f"part-{part:03d}.jsonl")
            wanted = min(len(rows), (part + 1) * step)
            while summary(lake).get("records_read", 0) < wanted:
                if proc.poll() is not None:
                    raise SystemExit(f"the stream exited ({proc.returncode}):\n{proc.stderr.read()[-3000:]}")
                time.sleep(1)
    finally:
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=600)[1]
    if proc.returncode != 0:
        raise SystemExit(f"the stream failed ({proc.returncode}):\n{err[-3000:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(REPO.parent / "shared" / "corpus"))
    parser.add_argument("--tools", default=None)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=12000, help="records per half for the wording sample")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", required=True)
    parser.add_argument("--no-extraction", action="store_true", help="skip the extraction pages")
    parser.add_argument("--runs", default="a-b,b-a,all-a,all-b", help="which runs (default: all four)")
    parser.add_argument("--out", default="heldout.json", help="result file name inside --work")
    parser.add_argument("--stream-files", type=int, default=0,
                        help="run the corpus as a stream fed this many files (default 0: a batch run)")
    args = parser.parse_args(argv)
    wanted = set(args.runs.split(","))
    pool = Path(args.pool).resolve()
    tools = Path(args.tools).resolve() if args.tools else pool.parent / "tools"
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    nice = ["nice", "-n", "10"]

    lines = {}
    for half in "ab":
        corpus, truth = work / f"corpus_{half}.jsonl", work / f"truth_{half}.jsonl"
        if not corpus.exists():
            run(nice + [sys.executable, tools / "make_corpus.py", "--pool", pool, "--n", args.n, "--seed", args.seed,
                        "--boilerplate-half", half, "--out", corpus, "--truth", truth, "--quiet"])
        sample = work / f"sample_truth_{half}.jsonl"
        if not sample.exists():
            run(nice + [sys.executable, tools / "make_corpus.py", "--pool", pool, "--n", args.sample,
                        "--seed", args.seed + 1000, "--boilerplate-half", half, "--out", work / "sample.jsonl",
                        "--truth", sample, "--quiet"])
        lines[half] = injected_lines(sample)

    tables = tomllib.loads((REPO / "transforms" / "rules" / "boilerplate.toml").read_text("utf-8"))["rules"]
    pages = work / "pages.jsonl"
    if not args.no_extraction and not pages.exists():
        run([sys.executable, tools / "score_lake.py", "extraction-input", pool, pages])
    results = {}
    for fit, test in (("a", "b"), ("b", "a"), (None, "a"), (None, "b")):
        if f"{fit or 'all'}-{test}" not in wanted:
            continue
        if fit:
            fitted, dropped = fitted_tables(tables, lines[fit], lines[test])
            rules_text, label = toml_rules(fitted), f"{fit}->{test}"
        else:
            dropped, label = 0, f"all rules, half {test}"
            rules_text = (REPO / "transforms" / "rules" / "boilerplate.toml").read_text("utf-8")
        # A copy of the package (whose packaged rules are the fitted ones): every run imports this checkout as it
        # was when the run began, even while the checkout changes.
        tree = work / f"fit_{fit or 'all'}"
        if tree.exists():
            shutil.rmtree(tree)
        for part in ("pipeline", "transforms"):
            shutil.copytree(REPO / part, tree / "wirewash" / part, ignore=shutil.ignore_patterns("__pycache__"))
        (tree / "wirewash" / "transforms" / "rules" / "boilerplate.toml").write_text(rules_text, "utf-8")
        # PYTHONPATH comes before the editable install's finder, so `wirewash.*` is imported from the copy.
        env, cwd = dict(os.environ, PYTHONPATH=str(tree)), tree
        lake = work / f"lake_{fit or 'all'}_{test}"
        if args.stream_files:
            lake = work / f"stream_lake_{fit or 'all'}_{test}"
            stream_run(work / f"corpus_{test}.jsonl", lake, work / f"watch_{fit or 'all'}_{test}", args.stream_files,
                       env, cwd)
        else:
            run(nice + [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", work / f"corpus_{test}.jsonl",
                        "--output", lake, "--overwrite", "--quiet"], env=env, cwd=cwd)
        scores = json.loads(run([sys.executable, tools / "score_lake.py", "corpus", work / f"corpus_{test}.jsonl",
                                 work / f"truth_{test}.jsonl", lake, "--json"]))
        extraction = {}
        if not args.no_extraction:
            pages_lake = work / f"pages_lake_{fit or 'all'}_{test}"
            run(nice + [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", pages, "--output", pages_lake,
                        "--overwrite", "--quiet"], env=env, cwd=cwd)
            extraction = json.loads(run([sys.executable, tools / "score_lake.py", "extraction", pool, pages_lake,
                                         "--json"]))
        results[label] = {"patterns_left_out": dropped, "corpus": scores, "extraction": extraction}
        print(label, {"patterns_left_out": dropped, **{k: scores.get(k) for k in (
            "boilerplate_removed", "content_kept", "accounted", "exact_recall", "lang_accuracy")},
            **{k: extraction.get(k) for k in ("aeb", "fundus", "snippets_right")}}, flush=True)
    (work / args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
