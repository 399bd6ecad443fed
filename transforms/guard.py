"""Per-record isolation: one record's failure becomes its rejection, never the run's.

Every per-record stage wrapper (`DoFn.process`) is decorated with `isolated(stage, tag)`: whatever
exception the stage raises for one record (a bug, a `RecursionError` on deep input, an encoding error, a
library's own exception) becomes one `Rejection` with that stage, the reason `<stage>_error` and the
error's type and message, on the stage's rejected output; the other records go on. This holds by
construction, for any exception type, not for a listed few. Two kinds still stop the run, because they
are not the record's fault and rejecting every record for them would silently empty the lake:
`ImportError` (a broken installation) and what is not an `Exception` (KeyboardInterrupt, SystemExit).

A record's outputs are collected before any is emitted, so a stage that fails half-way through a record
never lets part of it through: it ends in exactly one place.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from wirewash.transforms.types import Article, Rejection, excerpt

__all__ = ["isolated", "record_error", "FATAL_ERRORS", "error_reason"]

# Installation faults: rejecting every record for them would empty the lake, so they fail the run.
FATAL_ERRORS = (ImportError,)
ERROR_CHARS = 300


def error_reason(stage: str) -> str:
    """The rejection reason of a record that made `stage` raise."""
    return f"{stage}_error"


def record_error(stage: str, article: Article, err: BaseException) -> Rejection:
    """The rejection of `article` for the exception `err` raised while `stage` processed it."""
    return Rejection(article.doc_id, article.source_location, stage, error_reason(stage),
                     excerpt(article.text or article.html), excerpt(f"{type(err).__name__}: {err}", ERROR_CHARS))


def isolated(stage: str, rejected_tag: Optional[str], article_of: Optional[Callable] = None):
    """Decorates a `DoFn.process(self, element, ...)`: an exception for one element yields one rejection
    (on the output `rejected_tag`, or the main output when None), and nothing else of that element.
    `article_of(self, element)` recovers the Article from the element (default: the element itself)."""

    def decorate(process):
        @functools.wraps(process)
        def guarded(self, element, *args, **kwargs):
            try:
                outputs = list(process(self, element, *args, **kwargs))
            except FATAL_ERRORS:
                raise
            except Exception as err:  # noqa: BLE001 - any exception of one record is that record's rejection
                article = article_of(self, element) if article_of else element
                Metrics.counter(stage, f"dropped_{error_reason(stage)}").inc()
                rejection = record_error(stage, article, err)
                yield beam.pvalue.TaggedOutput(rejected_tag, rejection) if rejected_tag else rejection
                return
            yield from outputs

        return guarded

    return decorate
