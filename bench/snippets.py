"""The extraction pages' snippets under held-out rules, per page half (issue 20).

    python bench/snippets.py --work /tmp/ho [--runs a-b,b-a,all] [--show 0|1|both] [--reuse]

`bench/heldout.py` runs the pool's 1,002 extraction pages through rules fitted to one boilerplate half; this
runs only those pages (no corpus), and scores snippets_right on two fixed halves of the pages, split by a hash
of the page key ("<part>-<id>", `page_half`), so a change designed on the losses of one half can be checked
on pages nobody looked at. `--show` lists the wrong snippets of a half: the snippet, its page, and for a
"without" snippet that stayed, the packaged rule that removes it with every rule (the one the fitted rules
lost, if any). The fitted rules and the sample truths are heldout.py's (same `--work`, `--sample`, `--seed`).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tomllib
from pathlib import Path

import xxhash

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import heldout  # noqa: E402  (bench/heldout.py: the fitted rules)


def page_half(key: str) -> int:
    """The fixed half (0 or 1) of an extraction page, by a hash of its key."""
    return xxhash.xxh3_64_intdigest(key.encode("utf-8")) & 1


def scorer(tools: Path):
    spec = importlib.util.spec_from_file_location("score_lake", tools / "score_lake.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wrong_snippets(score, pool: Path, lake: Path) -> tuple[dict, list]:
    """({half: [right, total]}, [(half, page key, url, 'with'|'without', snippet)] of the wrong ones)."""
    docs = {d: t for d, t in score.table(lake, "documents", ["doc_id", "text"])}
    dups = {d: o for d, o in score.table(lake, "duplicates", ["doc_id", "duplicate_of"])}
    counts = {0: [0, 0], 1: [0, 0]}
    wrong = []
    for part, page in score.pages(pool):
        if page.get("gold_text"):
            continue
        key = f"{part}-{page['id']}"
        half = page_half(key)
        out = f" {score.fold(docs.get(key) or docs.get(dups.get(key), '') or '')} "
        for kind, want in (("with", True), ("without", False)):
            for snippet in page.get(kind) or []:
                right = (f" {score.fold(snippet)} " in out) == want
                counts[half][0] += right
                counts[half][1] += 1
                if not right:
                    wrong.append((half, key, page.get("url"), kind, snippet))
    return counts, wrong


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(REPO.parent / "shared" / "corpus"))
    parser.add_argument("--work", required=True)
    parser.add_argument("--sample", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", default="a-b,b-a,all")
    parser.add_argument("--show", default="", help="list the wrong snippets of page half 0, 1 or both")
    parser.add_argument("--reuse", action="store_true", help="score the page lakes already in --work")
    parser.add_argument("--out", default="snippets.json")
    args = parser.parse_args(argv)
    pool = Path(args.pool).resolve()
    tools = pool.parent / "tools"
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    score = scorer(tools)
    nice = ["nice", "-n", "10"]
    lines = {}
    for half in "ab":
        sample = work / f"sample_truth_{half}.jsonl"
        if not sample.exists():
            heldout.run(nice + [sys.executable, tools / "make_corpus.py", "--pool", pool, "--n", args.sample,
                                "--seed", args.seed + 1000, "--boilerplate-half", half, "--out", work / "sample.jsonl",
                                "--truth", sample, "--quiet"])
        lines[half] = heldout.injected_lines(sample)
    pages = work / "pages.jsonl"
    if not pages.exists():
        heldout.run([sys.executable, tools / "score_lake.py", "extraction-input", pool, pages])
    rules_path = REPO / "transforms" / "rules" / "boilerplate.toml"
    tables = tomllib.loads(rules_path.read_text("utf-8"))["rules"]
    from wirewash.transforms.boilerplate import load_rules, match_line
    every_rule = load_rules()
    results = {}
    for run in args.runs.split(","):
        fit = None if run == "all" else run.split("-")[0]
        test = None if fit is None else run.split("-")[1]
        tree = work / f"snip_fit_{run}"
        lake = work / f"snip_pages_{run}"
        if not args.reuse:
            rules_text = rules_path.read_text("utf-8")
            if fit:
                fitted, _ = heldout.fitted_tables(tables, lines[fit], lines[test])
                rules_text = heldout.toml_rules(fitted)
            if tree.exists():
                shutil.rmtree(tree)
            for part in ("pipeline", "transforms"):
                shutil.copytree(REPO / part, tree / "wirewash" / part, ignore=shutil.ignore_patterns("__pycache__"))
            (tree / "wirewash" / "transforms" / "rules" / "boilerplate.toml").write_text(rules_text, "utf-8")
            env = dict(os.environ, PYTHONPATH=str(tree))
            heldout.run(nice + [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", pages, "--output",
                                lake, "--overwrite", "--quiet"], env=env, cwd=tree)
        counts, wrong = wrong_snippets(score, pool, lake)
        right = sum(c[0] for c in counts.values())
        total = sum(c[1] for c in counts.values())
        row = {"pages_half_0": round(counts[0][0] / counts[0][1], 4), "pages_half_1": round(counts[1][0] / counts[1][1], 4),
               "whole": round(right / total, 4), "right": {h: c[0] for h, c in counts.items()},
               "total": {h: c[1] for h, c in counts.items()}}
        results[run] = {**row, "wrong": wrong}
        print(run, row, flush=True)
        for half, key, url, kind, snippet in wrong:
            if args.show in (str(half), "both"):
                rule = match_line(every_rule, snippet) if kind == "without" else None
                print(f"  [{half}] {kind:7} {rule or '-':14} {snippet[:110]!r}  <{(url or key)[:70]}>")
    (work / args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
