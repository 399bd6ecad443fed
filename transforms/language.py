"""Language stage: the main language of each cleaned article, as an ISO 639-1 code and a probability.

langdetect (seeded, so every worker and rerun agrees) runs on a bounded sample of the text. A text with too
few letters, or whose best language is not confident, gets `und`. Nothing is dropped here.
"""
from __future__ import annotations

import threading
from typing import Callable

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.types import UNDETERMINED_LANGUAGE, Article

__all__ = ["DetectLanguage", "detect_language", "load_langdetect"]

NAMESPACE = "language"
SEED = 0
SAMPLE_CHARS = 2000
MIN_LETTERS = 20
MIN_PROBABILITY = 0.5

# langdetect's own codes -> ISO 639-1 as the lake uses them.
CODE_MAP = {"zh-cn": "zh", "zh-tw": "zh", "iw": "he", "no": "nb", "in": "id", "jw": "jv"}

_LOCK = threading.Lock()
_DETECT = None


def load_langdetect() -> Callable[[str], list]:
    """A `detect_langs`-like function with langdetect's profiles loaded once per process and seeded."""
    global _DETECT
    with _LOCK:  # langdetect's first load is not thread-safe
        if _DETECT is None:
            from langdetect import DetectorFactory, detector_factory
            from langdetect.lang_detect_exception import LangDetectException

            DetectorFactory.seed = SEED
            detector_factory.init_factory()
            factory = detector_factory._factory

            def detect_langs(text: str) -> list:
                detector = factory.create()
                detector.append(text)
                try:
                    return [(p.lang, p.prob) for p in detector.get_probabilities()]
                except LangDetectException:
                    return []

            _DETECT = detect_langs
    return _DETECT


def language_sample(text: str, limit: int = SAMPLE_CHARS) -> str:
    """The first `limit` characters, cut at a word boundary: enough for a stable answer, bounded in cost."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit]


def detect_language(text: str, detect_langs: Callable[[str], list]) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of the text's main language, or (`und`, 0.0) when unsure."""
    sample = language_sample(text)
    if sum(ch.isalpha() for ch in sample) < MIN_LETTERS:
        return UNDETERMINED_LANGUAGE, 0.0
    ranked = detect_langs(sample)
    if not ranked:
        return UNDETERMINED_LANGUAGE, 0.0
    code, prob = ranked[0]
    if prob < MIN_PROBABILITY:
        return UNDETERMINED_LANGUAGE, 0.0
    return CODE_MAP.get(code, code), round(float(prob), 4)


class _DetectLanguageFn(beam.DoFn):
    def setup(self):
        self.detect_langs = load_langdetect()

    def process(self, article: Article):
        lang, prob = detect_language(article.text, self.detect_langs)
        Metrics.counter(NAMESPACE, "seen").inc()
        Metrics.counter(NAMESPACE, f"lang_{lang}").inc()
        yield article._replace(lang=lang, lang_prob=prob)


class DetectLanguage(beam.PTransform):
    """Article -> Article with `lang` and `lang_prob` set; counters `language/lang_<code>`."""

    def expand(self, articles):
        return articles | "Langdetect" >> beam.ParDo(_DetectLanguageFn())
