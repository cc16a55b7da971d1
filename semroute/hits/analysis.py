"""One question broken into what the pair features compare: words, stems, numbers, negation, lexicon hits.

``analyse`` tokenises an English or Turkish question once (Turkish-aware lower-casing with dotted and
dotless i, crude stems that strip one Turkish case ending or an English plural, the lexicon's
two-word compounds merged, numbers, negation including Turkish negative verb forms, proper nouns,
same-kind lexicon members, opposite-action phrases, character trigrams) into a frozen ``Analysed``.
It looks at one text only: comparing two of them, and the feature vector built from that, is
``semroute.hits.pairs``; the word lists themselves are ``semroute.hits.lexicon``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .lexicon import (
    COMPOUNDS,
    KINDS,
    LIMITS_MEANING_MAXIMUM,
    MAXIMUM,
    NEGATIONS,
    NOT_A_NUMBER_BEFORE,
    NOT_OPPOSITES,
    NUMBER_VALUES,
    OPPOSITES,
    STOPWORDS,
    SYNONYMS,
    TURKISH_NUMBER_VALUES,
)

__all__ = ["Analysed", "analyse", "is_turkish", "lower", "stem"]

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
# 2nd, 5th; Turkish 2nci, 5inci, 3üncü (also written 2'nci: the apostrophe already splits those off).
_DIGIT_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th|[ıiuü]?nc[ıiuü])")
_NON_WORD = re.compile(r"[^\w ]+")
_APOSTROPHE = re.compile(r"['’]")
_TR_CHARS = re.compile(r"[çğıöşüÇĞİÖŞÜ]")
# Turkish negative verb forms, only read on Turkish text: gelmiyor, gelmez, gelmedi, gelmeyecek, gelmemiş,
# gelmesin, gelmemeli (must not), gelmeden (without), gelmeyin (don't), gelmeyebilir (may not), gelemez.
_TR_NEG = re.compile(
    r"\w{2,}(?:m[ıiuü]yor|m[ae]z\b|m[ae]d[ıiuü]|m[ae]y[ae]c|m[ae]m[ıiuü]ş|m[ae]s[ıi]n|m[ae]m[ae]l[ıi]"
    r"|m[ae]d[ae]n\b|m[ae]y[ıi]n\b|m[ae]y[ae]bil)"
)
_FOLD = str.maketrans("şığçöüâîû", "sigcouaiu")
# Folded (no diacritics), as stems are: açarım -> acarim.
_TR_VERB_ENDINGS = frozenset(
    """ar er ir ur in un abilir ebilir acak ecek iyor uyor ma me sana sene arim erim irim urum arsin ersin
    abilirim ebilirim misin acagim ecegim iyorum uyorum mak mek iniz alim elim
    rsam rsem rsa rse arsam ersem arsa erse r rim rsin riz rsiniz rler""".split()  # noqa: SIM905
)
# Words only Turkish uses (names such as "Kim" or "Ama" would turn English text Turkish).
_TR_HINTS = frozenset(
    "mi mı mu mü miyim misin miyiz misiniz midir nedir nasıl neden nerede hangi kaç var yok değil için ile".split()  # noqa: SIM905
)
# Turkish case, plural, possessive and copula endings (folded), longest first; one is stripped from a
# Turkish word when a root of >= 3 letters remains: otoyolda -> otoyol, köyden -> köy, cezası -> ceza.
_TR_SUFFIXES = tuple(sorted(set(
    """lardan lerden larda lerde lari leri larin lerin lar ler ndan nden dan den tan ten nda nde daki deki
    taki teki da de ta te nin nun nun sinin sunun sina sine sini sinda sinde sindan sinden si su ya ye yi yu
    ni nu dir dur tir tur yla yle la le a e i u""".split()), key=len, reverse=True))  # noqa: SIM905


def is_turkish(text: str) -> bool:
    """Turkish letters or a Turkish question word seen (English embedders map Turkish poorly)."""
    if _TR_CHARS.search(text):
        return True
    return any(w in _TR_HINTS for w in _TOKEN.findall(text.lower()))


def lower(text: str, turkish: bool | None = None) -> str:
    """Lower-case ``text``; Turkish text lower-cases I to ı and İ to i (Python's default maps I to i
    and İ to i + a combining dot). ``turkish`` None: decided by ``is_turkish``."""
    if turkish is None:
        turkish = is_turkish(text)
    if turkish:
        text = text.replace("I", "ı")
    return text.replace("İ", "i").lower()


_lower = lower


def _tr_root(w: str) -> str:
    if w in _LEXICON_FOLDED:
        return w
    roots = [w[: -len(x)] for x in _TR_SUFFIXES if w.endswith(x) and len(w) - len(x) >= 3 and any(v in w[: -len(x)] for v in "aeiou")]
    known = next((r for r in roots if r in _LEXICON_FOLDED), None)  # otoyola: otoyol + a, not otoyo + la
    if known is not None:
        return known
    root = roots[0] if roots else w
    # A root's final vowel is dropped too, so araba/arabayla and zorunlu/zorunludur meet.
    return root[:-1] if len(root) >= 4 and root[-1] in "aeiou" else root


@functools.lru_cache(maxsize=16_384)  # words repeat across texts; a Turkish stem tries ~60 endings (~4 MB full)
def stem(word: str, turkish: bool = False) -> str:
    """A crude stem: folded diacritics, then the English plural (or, for Turkish, one case ending) stripped."""
    w = word.translate(_FOLD)
    if turkish:
        return _tr_root(w) if w not in _LEXICON_FOLDED else w
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


_COMPOUND_FIRST: dict[str, list[tuple[str, str]]] = {}
for (_first, _second), _merged in COMPOUNDS.items():
    _COMPOUND_FIRST.setdefault(_first, []).append((_second, _merged))


def _merge_compounds(words: list[str], article: frozenset[int] = frozenset()) -> list[str]:
    """Two-word phrases of ``COMPOUNDS`` merged into one word (şehir içinde -> şehiriçi, B sınıfı -> sınıf_b).
    Words at the positions in ``article`` start none (English "a licence" is not class A)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        if i + 1 < len(words) and i not in article:
            merged = next((m for b, m in _COMPOUND_FIRST.get(words[i], ()) if words[i + 1].startswith(b)), None)
            if merged is not None:
                out.append(merged)
                i += 2
                continue
        out.append(words[i])
        i += 1
    return out


@dataclass(frozen=True, slots=True)
class Analysed:
    """One text broken into what the features compare."""

    text: str  # lower-cased, Turkish-aware
    words: tuple[str, ...]  # all word tokens, lower-cased, apostrophe suffixes dropped
    content: tuple[str, ...]  # stems of content words (no stopwords, no numbers)
    numbers: frozenset[str]
    negated: bool
    proper: frozenset[str]  # stems of capitalised words not at the start of the text
    turkish: bool  # Turkish letters or question particles seen (English embedders map Turkish poorly)
    kinds: dict[str, frozenset[str]]  # same-kind lexicon members present, by kind
    phrases: frozenset[str]  # opposite-action lexicon phrases present
    stems: tuple[str, ...]  # stem of each of ``words`` (computed once: every pair feature reads them)
    trigrams: frozenset[str]  # character trigrams of the folded text


def _number(token: str, turkish: bool) -> str | None:
    """The value a token names (digits, a number word or an ordinal), or None."""
    if _DIGITS.fullmatch(token):
        return token.replace(",", "").rstrip("0").rstrip(".") if "." in token else token.replace(",", "")
    ordinal = _DIGIT_ORDINAL.fullmatch(token)
    if ordinal is not None:
        return ordinal.group(1)
    value = NUMBER_VALUES.get(token)
    return TURKISH_NUMBER_VALUES.get(token) if value is None and turkish else value


def analyse(text: str) -> Analysed:
    """Tokenise ``text`` (English or Turkish) into words, content stems, numbers, negation, proper nouns."""
    turkish = is_turkish(text)
    low = lower(text, turkish)
    raw = _TOKEN.findall(text)
    bases = [_APOSTROPHE.split(tok, maxsplit=1)[0] for tok in raw]
    article = frozenset() if turkish else frozenset(i for i, b in enumerate(bases) if b == "a")
    lowered = _merge_compounds([lower(b, turkish) for b in bases], article)
    capital = {lower(b, turkish) for i, b in enumerate(bases) if i > 0 and b[:1].isupper() and b != "I"}
    negated = sum(lower(tok, turkish).endswith(("n't", "n’t")) for tok in raw) % 2 == 1
    words, stems, content, numbers, proper = [], [], [], set(), set()
    for i, word in enumerate(lowered):
        words.append(word)
        s = stem(word, turkish)
        s = _SYNONYM_STEM.get(s, s)
        stems.append(s)
        num = _number(word, turkish)
        if num is not None and word in NOT_A_NUMBER_BEFORE and i + 1 < len(lowered):
            num = None if lowered[i + 1].startswith(NOT_A_NUMBER_BEFORE[word]) else num
        if num is not None:
            numbers.add(num)
            continue
        if word in NEGATIONS:
            negated = not negated
        if word in STOPWORDS or len(word) < 2:
            continue
        content.append(s)
        if word in capital:
            proper.add(s)
    if turkish:
        negated = negated ^ (len(_TR_NEG.findall(low)) % 2 == 1)
    folded = low.translate(_FOLD)  # without Turkish letters, as users also type it
    kinds, phrases = _lexicon_hits(folded, words, stems)
    return Analysed(
        low, tuple(words), tuple(content), frozenset(numbers), negated, frozenset(proper), turkish, kinds, phrases,
        tuple(stems), frozenset(_trigrams(folded)),
    )


def _prefixes(s: str) -> Iterable[str]:
    # Lexicon words >= 4 letters also match inflected forms (kapat -> kapatır, city -> city's).
    yield s
    for k in range(4, len(s)):
        yield s[:k]


def _prefixes_longest_first(s: str) -> Iterable[str]:
    yield s
    for k in range(len(s) - 1, 3, -1):
        yield s[:k]


def _build_tables() -> tuple[dict[str, str], dict[str, tuple[str, ...]], tuple[tuple[str, str, re.Pattern[str]], ...]]:
    # Lexicon words are looked up by their folded form and by both stems (English and Turkish).
    kinds: dict[str, str] = {}
    for kind, words in KINDS.items():
        for w in words:
            if w not in STOPWORDS:
                canon = SYNONYMS.get(w, w).translate(_FOLD)
                for key in {w.translate(_FOLD), stem(w), stem(w, True)}:
                    kinds.setdefault(key, kind)
                    _CANON.setdefault(key, canon)
    single: dict[str, list[str]] = {}
    multi = []
    for pair in OPPOSITES:
        for phrase in pair:
            if " " in phrase:
                multi.append(phrase)
            else:
                for key in {stem(phrase), stem(phrase, True)}:
                    single.setdefault(key, []).append(phrase)
    # Matched on folded text; a last word of >= 4 letters may carry suffixes, as single words may
    # ("alt sınırı", "high beams"), a shorter one may not ("en az" is not "en azından").
    patterns = {(p, p.translate(_FOLD)) for p in multi}
    return kinds, {k: tuple(v) for k, v in single.items()}, tuple(
        (p, plain, re.compile(r"\b" + re.escape(plain) + ("" if len(plain.split()[-1]) >= 4 else r"\b")))
        for p, plain in sorted(patterns))


_CANON: dict[str, str] = {}  # a kind member's key -> its canonical member (synonyms share one)
# ``stem`` leaves lexicon words whole (şehirlerarası is not şehirler + arası).
_LEXICON_FOLDED = frozenset(
    w.translate(_FOLD) for words in KINDS.values() for w in words if len(w) > 3
) | frozenset(p.translate(_FOLD) for pair in OPPOSITES for p in pair if " " not in p and len(p) > 3)
_KIND_OF, _OPP_SINGLE, _OPP_MULTI = _build_tables()
# Synonyms share one content stem (araba ~ otomobil), so neither counts as a word the other side lacks.
_SYNONYM_STEM = {k: v.translate(_FOLD) for w, v in SYNONYMS.items() for k in (w.translate(_FOLD), stem(w), stem(w, True))}


@functools.lru_cache(maxsize=16_384)  # words repeat across texts (~4 MB full)
def _word_hits(w: str, s: str) -> tuple[tuple[str, str] | None, tuple[str, ...]]:
    """What one word (``s``: its stem) brings to ``_lexicon_hits``: its (kind, canonical member) if it
    names a member of a kind, and the opposite-action phrases it matches."""
    if w in STOPWORDS:
        return None, ()
    plain = w.translate(_FOLD)
    found = plain if plain in _KIND_OF else next((p for p in _prefixes_longest_first(s) if p in _KIND_OF), None)
    member = None if found is None else (_KIND_OF[found], _CANON.get(found, found))
    if s.startswith(NOT_OPPOSITES):
        return member, ()
    phrases: list[str] = []
    for p in _prefixes(s):
        if p in _OPP_SINGLE and (p == s or len(p) >= 4):
            phrases.extend(_OPP_SINGLE[p])
    for k in (2, 3):  # short Turkish verbs: aç -> açar, açabilir mi
        if s[:k] in _OPP_SINGLE and s[k:] in _TR_VERB_ENDINGS:
            phrases.extend(_OPP_SINGLE[s[:k]])
    return member, tuple(phrases)


def _lexicon_hits(folded: str, words: Sequence[str], stems: Sequence[str]) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    """Same-kind members (by kind) and opposite-action phrases present in a text (``folded``: the
    lower-cased text without diacritics; ``stems``: of ``words``)."""
    kinds: dict[str, set[str]] = {}
    phrases: set[str] = set()
    for w, s in zip(words, stems):
        member, opposites = _word_hits(w, s)
        if member is not None:
            kinds.setdefault(member[0], set()).add(member[1])
        phrases.update(opposites)
    for phrase, plain, pattern in _OPP_MULTI:  # "en dusuk" is "en düşük" typed without its letters
        if plain in folded and pattern.search(folded):
            phrases.add(phrase)
    if not phrases & _MINIMUM and _LIMIT.search(folded):
        phrases.update(MAXIMUM)
    if "licence_class" in kinds:  # "B sınıfı", "B ehliyet", "class B": a licence, named or not
        kinds.setdefault("document", set()).add(_CANON["licence"])
    return {k: frozenset(v) for k, v in kinds.items()}, frozenset(phrases)


_LIMIT = re.compile(r"\b(?:" + "|".join(re.escape(limit) for limit in LIMITS_MEANING_MAXIMUM) + ")")
# The lower end of a range: the opposites of ``MAXIMUM``'s members.
_MINIMUM = frozenset(b if a in MAXIMUM else a for a, b in OPPOSITES if (a in MAXIMUM) != (b in MAXIMUM))


def _trigrams(folded: str) -> set[str]:
    t = "  " + _NON_WORD.sub("", folded) + " "
    return {t[i : i + 3] for i in range(len(t) - 2)}
