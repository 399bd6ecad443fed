"""What a lake says about itself: `_SUMMARY.json`, its counts, invariants and `runs`.

A run's counts come from per-record facts (`_fact_of`, combined by `_SummaryFn`) and the reader's byte tally
(`unread_input`): records read = documents + duplicates + rejected, by stage and reason (`summarize`). An
append adds its run to the lake's totals (`lake_summary`, `add_counts`). The summary is written through a
temporary file and a rename (`write_summary`): readers see the old one or the new one, never half of one.

Invariants checked on every run (in `_SUMMARY.json` under `invariants`; `ok` is false and the CLI exits 1
when one fails): records read = documents + duplicates + rejected, and each term equals the rows written;
every `duplicate_of` is a `doc_id` in documents (of this run or, for an append, of the lake); `doc_id`s are
unique in documents; every partition folder is `lang=<code from LANGUAGES or und>/date=<valid period or
unknown>`; every input file was read to its end and yielded as many records as its bytes hold
(`unread_input`, from the reader's own byte counts).
"""
from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from wirewash.pipeline.lake import (DOCUMENTS, DUPLICATES, REJECTED, STAGING_DIR, SUMMARY_FILE, TABLES, partition_of,
                                    read_summary)
from wirewash.transforms.dedup import DedupConfig

__all__ = ["summarize", "lake_summary", "add_counts", "write_summary", "unread_input", "add_to_run"]


STAGE_ORDER = ("read", "extract", "normalize", "boilerplate", "language", "dedup")


def summarize(records_read: int, documents: Counter, duplicates: Counter, rejected: Counter) -> dict:
    """The run summary from counted per-record facts (see `_fact_of`): documents by (lang, removed rules),
    duplicates by kind, rejections by (stage, reason). Top-level totals first, then per stage, rule,
    language, duplicate kind and rejection reason; `reconciled` says whether read = kept + dup + rejected."""
    n_docs, n_dups, n_rej = sum(documents.values()), sum(duplicates.values()), sum(rejected.values())
    by_stage = Counter()
    for (stage, _), n in rejected.items():
        by_stage[stage] += n
    stages, remaining = {}, records_read
    for stage in STAGE_ORDER:
        out = remaining - by_stage.get(stage, 0) - (n_dups if stage == "dedup" else 0)
        stages[stage] = {"in": remaining, "rejected": by_stage.get(stage, 0), "out": out}
        if stage == "dedup":
            stages[stage]["duplicates"] = n_dups
        remaining = out
    rules, languages, reasons = Counter(), Counter(), Counter()
    for (lang, removed), n in documents.items():
        languages[lang] += n
        for rule in removed:
            rules[rule] += n
    for (_, reason), n in rejected.items():
        reasons[reason] += n
    return {
        "records_read": records_read,
        "documents": n_docs,
        "duplicates": n_dups,
        "rejected": n_rej,
        "reconciled": records_read == n_docs + n_dups + n_rej,
        "stages": stages,
        "boilerplate_lines_removed": dict(sorted(rules.items())),
        "languages": dict(sorted(languages.items())),
        "duplicate_kinds": dict(sorted(duplicates.items())),
        "rejected_reasons": dict(sorted(reasons.items())),
    }


def _fact_of(table: str):
    """The small per-record facts that the summary needs (never the text)."""
    if table == DOCUMENTS:
        return lambda a: (DOCUMENTS, (partition_of(a)[5:].split("/")[0], tuple(a.removed_by_rule)))
    if table == DUPLICATES:
        return lambda d: (DUPLICATES, d.kind)
    return lambda r: (REJECTED, (r.stage, r.reason))


class _SummaryFn(beam.CombineFn):
    """Combines per-record facts into {table: Counter of facts}; small whatever the corpus size."""

    def create_accumulator(self):
        return {t: Counter() for t in TABLES}

    def add_input(self, acc, fact):
        acc[fact[0]][fact[1]] += 1
        return acc

    def merge_accumulators(self, accs):
        merged = self.create_accumulator()
        for acc in accs:
            for table in TABLES:
                merged[table].update(acc[table])
        return merged

    def extract_output(self, acc):
        return acc


def _violation_facts(item):
    """(doc_id, {docs: [...], dups: [...], lake: [...]}) -> the invariant violations it shows, as (name,
    count); `lake` holds the ids of the documents already in the lake (an append)."""
    _, grouped = item
    n_docs, n_dups, n_lake = len(grouped["docs"]), len(grouped["dups"]), len(grouped.get("lake", ()))
    if n_docs and n_docs + n_lake > 1:
        yield "duplicate_doc_ids", n_docs + n_lake - 1
    if n_dups and not n_docs and not n_lake:
        yield "dangling_duplicate_of", n_dups


def unread_input(tallies) -> list:
    """Input files the reader did not account for, from its per-file facts (`pipeline.tally.tally_fact`: file,
    read whole, records its bytes hold, records emitted): `"file: why"`, sorted; empty when all is well. A
    file not read to its end, or whose emitted records differ from the count on its bytes, lost records
    whatever the other counts say."""
    problems = []
    for name, whole, expected, emitted in sorted(tuple(t) for t in tallies):
        if not whole:
            problems.append(f"{name}: not read to its end")
        if expected != emitted:
            problems.append(f"{name}: {emitted} records read, its bytes hold {expected}")
    return problems


def _dedup_settings(config: DedupConfig) -> dict:
    """The settings an index's fingerprints depend on: an append must use the same."""
    return {"threshold": config.threshold, "num_perm": config.num_perm, "seed": config.seed, "near": config.near}


# Summary fields that add up over runs (the lake's totals after an append).
ADDITIVE = ("records_read", "documents", "duplicates", "rejected", "stages", "boilerplate_lines_removed",
            "languages", "duplicate_kinds", "rejected_reasons", "files_rows")


# The lake's history: what no run recomputes (written by `wirewash compact`); every append carries it on.
HISTORY = ("compactions",)


RUN_FIELDS = ("records_read", "documents", "duplicates", "rejected", "reconciled", "ok", "files_rows",
              "duplicate_kinds", "rejected_reasons")


def add_counts(a, b):
    """Sums two count trees (ints, and dicts of them), key by key; a key on one side only keeps its value.
    Lists (`invariants.unread_input`: each run's unread files) join, so an append never hides a past problem."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: add_counts(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k))
                for k in sorted(set(a) | set(b), key=str)}
    if isinstance(a, list) and isinstance(b, list):
        return sorted(a + b, key=str)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a + b
    return b


def lake_summary(previous: Optional[dict], run_summary: dict, files: dict, partition_by: str,
                 run: Optional[dict]) -> dict:
    """The lake's `_SUMMARY.json`: this run's summary, plus (after an append) the previous totals and history
    (`HISTORY`); `layout`, the `files` manifest and `runs` (one record per run: id, version, options, inputs,
    counts, times)."""
    record = dict(run or {})
    record.update({k: run_summary[k] for k in RUN_FIELDS if k in run_summary})
    summary = dict(run_summary)
    if previous is not None:
        for key in ADDITIVE:
            before, now = previous.get(key), summary.get(key)
            summary[key] = now if before is None else before if now is None else add_counts(before, now)
        summary["reconciled"] = bool(previous.get("reconciled")) and run_summary["reconciled"] and (
            summary["records_read"] == summary["documents"] + summary["duplicates"] + summary["rejected"])
        summary["ok"] = bool(previous.get("ok", True)) and run_summary["ok"] and summary["reconciled"]
        summary["invariants"] = add_counts(previous.get("invariants", {}), run_summary["invariants"])
        summary["invariants"]["reconciled"] = summary["reconciled"]
        # the most frequent removed lines of each rule over the runs (each run kept its top 5: an estimate)
        lines = add_counts(previous.get("boilerplate_removed_lines") or {}, summary.get("boilerplate_removed_lines") or {})
        summary["boilerplate_removed_lines"] = {
            rule: dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]) for rule, counts in lines.items()}
        summary.update({key: previous[key] for key in HISTORY if key in previous})
    summary["layout"] = {"partition_by": partition_by, "format": 2}
    summary["files"] = {t: sorted(files[t]) for t in TABLES}
    summary["runs"] = list((previous or {}).get("runs", [])) + [record]
    return summary


def write_summary(output: str, staging: str, summary: dict) -> None:
    """Replaces `_SUMMARY.json` atomically (a temporary file in the staging folder, then a rename)."""
    if not FileSystems.exists(staging):
        FileSystems.mkdirs(staging)
    tmp = FileSystems.join(staging, f"{SUMMARY_FILE}.{uuid.uuid4().hex}")
    with FileSystems.create(tmp) as handle:
        handle.write(json.dumps(summary, indent=2, sort_keys=False).encode("utf-8"))
    FileSystems.rename([tmp], [FileSystems.join(output, SUMMARY_FILE)])


def add_to_run(output: str, run_id: str, fields: dict) -> Optional[dict]:
    """After a run: adds `fields` (its `timing`) to that run's record in the lake's `runs` and replaces
    `_SUMMARY.json` atomically; tables and manifest untouched. The new summary, or None when the lake has no
    record of that run."""
    summary = read_summary(output)
    record = next((r for r in (summary or {}).get("runs", []) if r.get("run_id") == run_id), None)
    if record is None:
        return None
    record.update(fields)
    root = FileSystems.join(output, STAGING_DIR)
    made = not FileSystems.exists(root)
    staging = FileSystems.join(root, f"run-{uuid.uuid4().hex}")
    write_summary(output, staging, summary)
    try:
        FileSystems.delete([root if made else staging])
    except Exception:  # best effort, like remove_staging
        pass
    return summary
