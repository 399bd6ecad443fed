"""Boilerplate stage speed: the rules per line and the whole `strip_boilerplate` per record, in process.

    python bench/boilerplate_speed.py CORPUS.jsonl [--n 1500]

CORPUS is a make_corpus.py output; its text records (the first N) are cleaned three times, best time kept,
on one core. Prints microseconds per line for the rules pass and milliseconds per record for the stage.
"""
from __future__ import annotations

import argparse
import json
import time

from wirewash.transforms.boilerplate import fold_line, load_rules, strip_boilerplate
from wirewash.transforms.text import raw_fold


def best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    parser.add_argument("--n", type=int, default=1500, help="text records to clean (default 1500)")
    args = parser.parse_args(argv)
    texts = []
    with open(args.corpus, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("text"), str):
                texts.append((record["text"], record.get("title")))
            if len(texts) >= args.n:
                break
    rules = load_rules()
    folded = [(fold_line(line), raw_fold(line)) for text, _ in texts for line in text.splitlines() if line.strip()]
    per_line = best_of(lambda: [rules.match(f, r) for f, r in folded]) / len(folded)

    def clean_all():
        fold_line.cache_clear()
        rules.decisions.clear()  # each round starts with no decision kept
        for text, title in texts:
            strip_boilerplate(text, rules, title=title)

    per_record = best_of(clean_all) / len(texts)
    print(f"rules: {len(folded)} lines, {per_line * 1e6:.2f} us per line")
    print(f"strip_boilerplate: {len(texts)} records, {per_record * 1e3:.3f} ms per record")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
