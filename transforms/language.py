"""Language stage: the main language of each cleaned article, as an ISO 639-1 code and a confidence.

Two offline detectors, each used where it is good (measured on the lingua sentences of 75 languages):
- CLD2 (pycld2, ~0.15 ms) knows all of them, also the ones langdetect lacks (az, hy, ka, kk, mn, ms, bs, sr,
  nn, eu, eo, ga, is, la and the Bantu languages), and splits a mixed text into per-language shares, so the main
  language of a mixed article is the one with the most text. It decides first.
- langdetect (seeded, so every worker and rerun agrees) is asked only when CLD2 is unsure (no answer, or not
  "reliable" on a short text) and only when its answer is a language it knows: it is confidently wrong on the
  languages it lacks (nb -> no, ms -> id, hy -> et, xh -> sw), so its confidence alone decides nothing.
- Families of very close languages that both detectors confuse (ms/id, bs/Latin sr, nb/nn) are settled by
  marker words that differ in spelling or vocabulary between the standard languages (`CLOSE_LANGUAGES`).
`<html lang>` (`Article.lang_hint`) is only a hint: it breaks a tie between candidates the detectors proposed,
never adds a language of its own (about one page in ten says `en` whatever it is written in).
A text with too few letters, or no confident answer, gets `und`. Nothing is dropped here, but a record that
makes detection raise (`language_error`). Cost is bounded: CLD2 reads at most `CLD2_CHARS`, langdetect at
most `SAMPLE_CHARS`.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from typing import Callable, NamedTuple, Optional, Sequence

import apache_beam as beam
import pycld2
from apache_beam.metrics import Metrics
from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

from wirewash.transforms.guard import isolated
from wirewash.transforms.heap import frozen_after
from wirewash.transforms.types import REJECTED, UNDETERMINED_LANGUAGE, Article

__all__ = ["DetectLanguage", "detect_language", "tag_language", "load_langdetect", "cld2_detect", "LanguageGuess"]

NAMESPACE = "language"
STAGE = "language"
SEED = 0
SAMPLE_CHARS = 1000  # langdetect: ~2 ms here, 99.95% agreement with the full text (NOTES)
CLD2_CHARS = 8000  # CLD2 is ~15x cheaper: it reads more, so a mixed article's shares are right
MIN_LETTERS = 20
MIN_PROBABILITY = 0.5
SHORT_CHARS = 200  # below this CLD2's "unreliable" flag is common and a second opinion helps
LANGDETECT_TRUSTED = 0.9  # langdetect overrides an unsure CLD2 only when at least this sure
# A second language is listed when it covers both this share of the text and about two sentences: measured on
# the generator's mixed stories (two sentences inserted), lower floors listed leftover one-line boilerplate.
MIN_SECONDARY_PERCENT = 3
MIN_SECONDARY_CHARS = 100

# Detector codes -> ISO 639-1 as the lake uses them.
CODE_MAP = {"zh-cn": "zh", "zh-tw": "zh", "zh-Hant": "zh", "iw": "he", "no": "nb", "in": "id", "jw": "jv",
            "tl": "tl", "fil": "tl"}

# The languages langdetect 1.0.9 has profiles for (after CODE_MAP). Outside this set its answer is noise.
LANGDETECT_LANGUAGES = frozenset(
    "af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne nl nb pa pl "
    "pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh".split())

# Close languages that both detectors confuse: words frequent in one standard language and absent (or spelled
# differently) in the other. Sources: standard orthography and vocabulary (Malay "kerana/bahawa/wang" vs
# Indonesian "karena/bahwa/uang"; ijekavian "vrijeme/mjesto" vs ekavian "vreme/mesto"; Nynorsk "ikkje/eg/ein/
# kva" vs Bokmål "ikke/jeg/en/hva").
CLOSE_LANGUAGES = {
    frozenset({"ms", "id"}): {
        "ms": "kerana bahawa iaitu sahaja selepas wang kerajaan boleh ialah amat semasa menerusi pelbagai baharu "
              "mahupun antarabangsa sebarang negeri mac jun julai ogos disember encik sekiranya manakala "
              "berkenaan kenyataan lelaki kanak-kanak jabatan awam bandar sukan hospital polis tak malaysia",
        "id": "karena bahwa yaitu saja setelah uang pemerintah bisa berbagai baru sekitar maret juni juli agustus "
              "desember nggak enggak kabupaten provinsi kota melalui lewat pria polisi olahraga dinas bilang "
              "indonesia jakarta",
    },
    # Serbian in Latin script is ekavian, Bosnian ijekavian; CLD2 calls much Latin Bosnian "sr". Bosnian and
    # Croatian share the ijekavian forms and most vocabulary: their markers did worse than CLD2, so CLD2 decides.
    frozenset({"bs", "sr"}): {
        "bs": "vrijeme vremena mjesto mjesta djeca dijete lijepo lijepa rijeka rijeke prije poslije svijet svijeta "
              "uvijek gdje ovdje mlijeko bijelo bijela sjever sjevera željezo željeza lijek vijek vijeka stoljeće "
              "stoljeća cijeli cijela vjera mjesec mjeseca vjerovatno",
        "sr": "vreme vremena mesto mesta deca dete lepo lepa reka reke pre posle svet sveta uvek gde ovde mleko "
              "belo bela sever severa gvožđe lek vek veka ceo cela vera mesec meseca verovatno",
    },
    frozenset({"nb", "nn"}): {
        "nb": "ikke jeg hva hvordan hvorfor bare fra være nå mye hele derfor fikk gikk kommer mens selv mer "
              "senere flere noe noen hun også dem deres disse hvis hver",
        "nn": "ikkje eg ein eit kva korleis kvifor berre frå vere vera mykje heile difor fekk gjekk kjem medan "
              "sjølv meir seinare fleire noko nokon ho òg dei deira desse viss kvar utan vart hjå fyrst heilt",
    },
}
_MARKERS = {family: {code: frozenset(words.split()) for code, words in sides.items()}
            for family, sides in CLOSE_LANGUAGES.items()}
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


class LanguageGuess(NamedTuple):
    """One detector's view: ranked (code, share 0-1) pairs; `reliable` is the detector's own flag."""

    ranked: tuple
    reliable: bool
    chars: int = 0  # characters CLD2 attributed to some language


_LOCK = threading.Lock()
_DETECT = None


def load_langdetect() -> Callable[[str], list]:
    """A `detect_langs`-like function with langdetect's profiles loaded once per process and seeded."""
    global _DETECT
    with _LOCK:  # langdetect's first load is not thread-safe
        if _DETECT is None:
            DetectorFactory.seed = SEED
            # Our own factory through langdetect's public names (what its `init_factory` builds in the
            # private module global `_factory`): the profiles load once here, and nothing private is read.
            factory = DetectorFactory()
            with frozen_after():
                factory.load_profile(PROFILES_DIRECTORY)

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


def _cld2_safe(text: str) -> str:
    # CLD2 rejects control characters and unpaired surrogates as "invalid UTF-8"; they carry no language.
    return "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in text).encode(
        "utf-8", errors="ignore").decode("utf-8")


def has_enough_letters(text: str, minimum: int = MIN_LETTERS) -> bool:
    """Whether `text` has `minimum` letters, counting combining marks (Indic vowel signs, Thai) and one CJK
    ideograph, kana or hangul syllable as 3: each carries about as much as a short word. Stops early."""
    n = 0
    for ch in text:
        if ch.isalpha():
            n += 3 if ch >= "\u2e80" else 1
        elif unicodedata.category(ch).startswith("M"):
            n += 1
        if n >= minimum:
            return True
    return False


def cld2_detect(text: str) -> LanguageGuess:
    """CLD2's languages for `text` (at most `CLD2_CHARS`), ranked by their share of the characters, codes mapped.

    CLD2's own percentages are shares of UTF-8 bytes, which overweight non-Latin scripts (2-3 bytes a letter)
    in a mixed text; its per-span vectors let us count characters instead.
    """
    sample = language_sample(text, CLD2_CHARS)
    try:
        reliable, _, details, spans = pycld2.detect(sample, bestEffort=True, returnVectors=True)
    except (pycld2.error, UnicodeEncodeError):
        sample = _cld2_safe(sample)
        reliable, _, details, spans = pycld2.detect(sample, bestEffort=True, returnVectors=True)
    data = sample.encode("utf-8")
    chars = {}
    for offset, length, _, code in spans:
        if code != "un":
            code = CODE_MAP.get(code, code)
            chars[code] = chars.get(code, 0) + len(data[offset:offset + length].decode("utf-8", "ignore"))
    total = sum(chars.values())
    if total:
        ranked = sorted(((c, n / total) for c, n in chars.items() if n), key=lambda x: (-x[1], x[0]))
    else:
        ranked = [(CODE_MAP.get(code, code), percent / 100.0) for _, code, percent, _ in details
                  if code != "un" and percent > 0]
    return LanguageGuess(tuple(ranked), bool(reliable), total)


def marker_vote(text: str, family: frozenset) -> Optional[str]:
    """The member of a family of close languages whose marker words occur most in `text`, or None on a tie."""
    markers = _MARKERS[family]
    counts = dict.fromkeys(markers, 0)
    for word in _WORD.findall(text.casefold()):
        for code, words in markers.items():
            if word in words:
                counts[code] += 1
    ranked = sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    return ranked[0][0] if ranked[0][1] > ranked[1][1] else None


def _is_cyrillic(text: str) -> bool:
    cyrillic = sum("\u0400" <= ch <= "\u04ff" for ch in text[:1000])
    return cyrillic * 2 > sum(ch.isalpha() for ch in text[:1000])


def settle_close_languages(code: str, candidates: Sequence[str], text: str, hint: Optional[str]) -> str:
    """`code`, or the member of its family of close languages that the marker words (then the page's hint, if
    a detector also proposed it) point to. Cyrillic Serbian is left to CLD2: only Latin script is ambiguous."""
    for family in _MARKERS:
        if code in family:
            if code == "sr" and _is_cyrillic(text):
                return code
            vote = marker_vote(text, family)
            if vote is not None:
                return vote
            return hint if hint in family and hint in candidates else code
    return code


def decide(cld2: LanguageGuess, langdetect: Optional[list], text: str, hint: Optional[str] = None) -> tuple:
    """(code, confidence) from both detectors' answers; `langdetect` is None when it was not asked.

    Pure: the rules of the module docstring, in order. (`und`, 0.0) when neither detector is usable.
    """
    ld = [(CODE_MAP.get(c, c), p) for c, p in (langdetect or [])]
    ld_code, ld_prob = ld[0] if ld else (None, 0.0)
    if cld2.ranked:
        code, share = cld2.ranked[0]
        confidence = share if cld2.reliable else share / 2
        unsure = not cld2.reliable
        if (unsure and ld_code and ld_code != code and ld_prob >= LANGDETECT_TRUSTED
                and ld_code in LANGDETECT_LANGUAGES and code in LANGDETECT_LANGUAGES):
            code, confidence = ld_code, ld_prob  # both know both languages: the sure one wins
        elif ld_code == code:
            confidence = max(confidence, ld_prob)
    elif ld_code in LANGDETECT_LANGUAGES and ld_prob >= MIN_PROBABILITY:
        code, confidence = ld_code, ld_prob
    else:
        return UNDETERMINED_LANGUAGE, 0.0
    candidates = [c for c, _ in cld2.ranked] + [c for c, _ in ld]
    if hint and hint != code and hint in candidates[1:] and confidence < MIN_PROBABILITY:
        code = hint  # an unsure answer, and the page says another language a detector also saw
    code = settle_close_languages(code, candidates, text, hint)
    return code, round(min(float(confidence), 1.0), 4)


def secondary_languages(cld2: LanguageGuess, main: str) -> tuple:
    """Other languages CLD2 found in a substantial part of the text (mixed-language articles), sorted."""
    return tuple(sorted({c for c, share in cld2.ranked[1:] if c != main and share * 100 >= MIN_SECONDARY_PERCENT
                         and share * cld2.chars >= MIN_SECONDARY_CHARS}))


def detect_language(text: str, detect_langs: Callable[[str], list], hint: Optional[str] = None) -> tuple:
    """(ISO 639-1 code, confidence) of the text's main language, or (`und`, 0.0) when unsure."""
    return detect_languages(text, detect_langs, hint)[:2]


def detect_languages(text: str, detect_langs: Callable[[str], list], hint: Optional[str] = None) -> tuple:
    """(main code, confidence, secondary codes) of `text`; see the module docstring for the rules."""
    if not has_enough_letters(language_sample(text)):
        return UNDETERMINED_LANGUAGE, 0.0, ()
    cld2 = cld2_detect(text)
    ask_langdetect = not cld2.ranked or (not cld2.reliable and len(text) < SHORT_CHARS * 5)
    langdetect = detect_langs(language_sample(text)) if ask_langdetect else None
    code, confidence = decide(cld2, langdetect, language_sample(text, CLD2_CHARS), hint)
    if code == UNDETERMINED_LANGUAGE:
        return code, 0.0, ()
    return code, confidence, secondary_languages(cld2, code)


def tag_language(article: Article, detect_langs: Callable[[str], list]) -> Article:
    """The article with `lang`, `lang_prob` and `other_langs` set (`detect_languages`, its page's hint)."""
    lang, prob, others = detect_languages(article.text, detect_langs, article.lang_hint)
    return article._replace(lang=lang, lang_prob=prob, other_langs=others)


class _DetectLanguageFn(beam.DoFn):
    def setup(self):
        self.detect_langs = load_langdetect()

    @isolated(STAGE, REJECTED)
    def process(self, article: Article):
        tagged = tag_language(article, self.detect_langs)
        Metrics.counter(NAMESPACE, "seen").inc()
        Metrics.counter(NAMESPACE, f"lang_{tagged.lang}").inc()
        if tagged.other_langs:
            Metrics.counter(NAMESPACE, "mixed").inc()
        yield tagged


class DetectLanguage(beam.PTransform):
    """Article -> {`articles`: with `lang`, `lang_prob` and `other_langs` set, `rejected`: records that made
    detection raise (`language_error`, transforms/guard.py)}; counters `language/lang_<code>`,
    `language/mixed`."""

    def expand(self, articles):
        results = articles | "DetectLanguage" >> beam.ParDo(_DetectLanguageFn()).with_outputs(REJECTED, main="main")
        return {"articles": results["main"], "rejected": results[REJECTED]}
