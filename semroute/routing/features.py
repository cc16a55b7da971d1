"""Cheap text features of a prompt that the complexity classifier adds to its embedding.

The embedding says what a prompt is about; these say how much work it *asks for*. They read the
ask, not the length: a long chatty preamble before a one-fact question ("Hi, my cousin and I
argued at dinner ... anyway, what is the capital of Peru?") is still one fact, and a short
"Compare TCP and UDP." is still a comparison. The prompt is split into a preamble and the *ask*
(its last sentence, or the question after the last colon; a very short closing instruction such
as "Show each step." is read together with the sentence before it), and the features are:

- ``ask_words``: log words of the ask (capped at ``_ASK_WORDS_CAP``), not of the whole prompt.
- ``preamble_share``: share of the words that come before the ask (chat, context or data).
- ``task_verbs``: task verbs in the ask, English and Turkish (compare/karşılaştır, plan/planla,
  calculate/hesapla, explain/açıkla, draft/taslak hazırla, analyse/analiz et, prove/kanıtla,
  debug/hata ayıkla, design/tasarla, write/yaz ...): the ask is a task, not a lookup.
- ``lead_task``: the ask is an imperative task: it opens with a task verb (English) or closes with
  one (Turkish, verb-final), or asks for one politely ("can you compare", "karşılaştırır mısın").
- ``subtasks``: task verbs in the whole prompt plus sequencing words ("then", "ardından").
- ``factoid``: the ask is a lookup question (who/when/where/which/how many/what is; kim, ne zaman,
  nerede, hangi, kaç, nedir, a yes/no particle) with no task verb in it.
- ``why_how``: the ask asks for a mechanism or reason (why, how does, neden, nasıl çalışır).
- ``constraints``: constraint and scope words (step by step, at least, budget, pros and cons,
  trade-offs, adım adım, en fazla, bütçe, artıları ve eksileri ...).
- ``chatty``: greetings, apologies, thanks and asides (hi, sorry, anyway, merhaba, kusura bakmayın,
  neyse ...) that pad a prompt without adding work.
- ``digit_share``, ``math``, ``code``: numbers, operators and code syntax (calculations, programs).
- ``log_chars``: the whole prompt's length. The complexity head does not read it (its weight is
  fixed at 0, see ``LENGTH_FREE``); the routing head, which orders prompts the complexity head is
  already sure about (RouteLLM APGR, ``bench/router_quality.py``), has it among its inputs.

English patterns are matched on plain lower case, Turkish ones on Turkish lower case
(I -> ı, İ -> i). This module only computes
numbers from text; scaling and weighting belong to the classifier.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["FEATURE_NAMES", "LENGTH_FREE", "ask_of", "text_features"]

FEATURE_NAMES: tuple[str, ...] = (
    "ask_words", "preamble_share", "task_verbs", "lead_task", "subtasks", "factoid", "why_how",
    "constraints", "chatty", "digit_share", "math", "code", "log_chars",
)
# Features the complexity head must not weigh: raw length points the wrong way on chatty simple
# questions and terse complex asks (data/complexity_hard.csv measures exactly that).
LENGTH_FREE: tuple[str, ...] = ("log_chars",)

# A longer ask (a word problem, a pasted paragraph) is more work, but past ~40 words more length
# says little; capping keeps a long pasted question from outweighing what it asks.
_ASK_WORDS_CAP = 40
# A closing sentence this short ("Show each step.", "Her adımı göster.") qualifies the one before.
_SHORT_CLOSER_WORDS = 4
# Turkish is verb-final: the imperative and the question word or particle sit in the last words.
_TR_TAIL_WORDS = 6

_SENTENCE = re.compile(r"[^.!?。\n]+(?:[.!?。]+|\n|$)")
_MATH_CHARS = frozenset("+=^%$*/×÷<>")
_CODE_CHARS = frozenset("{}[]`_#|\\")

# English task verbs (and their usual forms); "plan" must not match "planet".
_EN_TASK = (
    r"compar(?:e|es|ed|ing|ison)|contrast|plan(?:s|ned|ning)?|calculat\w*|comput(?:e|ing)|work out|"
    r"explain\w*|draft\w*|(?:re)?writ(?:e|ing)|analy[sz]\w*|prove|proof|debug\w*|fix|design\w*|"
    r"deriv(?:e|ation)|evaluat\w*|assess\w*|outline|estimat\w*|optimi[sz]\w*|implement\w*|refactor\w*|"
    r"critique|criticis\w*|criticiz\w*|argue|summari[sz]e|creat(?:e|ing)|develop|build|solve|simulat\w*|"
    r"teach|walk me through|break down|weigh|discuss|recommend|propose|review|investigate|justify|"
    r"prepare|organi[sz]e|schedule|model|translate and|show (?:how|that|each|the steps)"
)
_EN_TASK_RE = re.compile(rf"\b(?:{_EN_TASK})\b")
_EN_LEAD_RE = re.compile(
    rf"^(?:(?:please|now|then|also|and|so|ok(?:ay)?|right)[, ]+)*"
    rf"(?:(?:can|could|would|will) you (?:please )?|help me |i need you to |i want you to |i'd like you to )?"
    rf"(?:{_EN_TASK})\b"
)
# Turkish task stems (verb-final imperatives and their polite/question forms share the stem).
# "yaz" alone is also "summer", so it counts only as the last word or in a request form.
_TR_TASK = (
    r"karşılaştır|kıyasla|planla|hesapla|açıkla|taslağ|taslak|analiz|kanıtla|ispatla|tasarla|"
    r"değerlendir|özetle|hazırla|oluştur|çöz|türet|düzelt|ayıkla|incele|eleştir|tartış|tahmin et|"
    r"gerekçelendir|optimize|geliştir|anlat|modelle|öner|sırala|öğret|dönüştür|kurgula|ana hatlarını"
)
# A stem followed by a past, progressive, future or participle suffix tells a story ("anlattı",
# "planladığı", "tartıştık"); only request, imperative and noun forms count.
_TR_NARRATIVE = r"(?!\w*?(?:d[ıiuü]|t[ıiuü]|m[ıiuü]ş|yor|acak|ecek|men))"
_TR_TASK_RE = re.compile(rf"\b(?:{_TR_TASK}){_TR_NARRATIVE}\w*|\byaz(?:ar mısın|abilir misin|ın|ınız)?\s*[.!?]*$|\byaz\b(?= ve )")
_TR_LEAD_RE = re.compile(rf"\b(?:{_TR_TASK}){_TR_NARRATIVE}\w*(?:\s+(?:et|eder|edin|yap|ver|misin|mısın))*\s*[.!?]*$|\byaz(?:ar mısın|abilir misin|ın|ınız)?\s*[.!?]*$")

_EN_FACT_RE = re.compile(
    r"^(?:(?:so|and|anyway|ok(?:ay)?|well|but|quick question|my question is)[,: ]+)*"
    r"(?:who|whom|whose|when|where|which|what(?:'s| is| are| was| were| does| do| did| year| colou?r| time| kind)"
    r"|how (?:many|much|old|tall|far|long|high|big|deep|often|fast|heavy)|in (?:which|what)"
    r"|is|are|was|were|does|do|did|can|has|have)\b"
)
_TR_FACT_RE = re.compile(r"\b(?:kim\w*|ne zaman|nere\w*|hangi\w*|kaç\w*|nedir|ne demek\w*|ne anlama|ne renk\w*)\b")
_TR_PARTICLE_RE = re.compile(r"\b(?:mı|mi|mu|mü|mıdır|midir|mudur|müdür)\s*[?]?$")  # a yes/no question
_EN_WHY_HOW_RE = re.compile(
    r"\b(?:why|how (?:does|do|did|can|could|would|should|is|are|to)|what (?:would|happens|are the "
    r"(?:differences|pros|cons|trade-?offs|causes|effects|consequences)))\b"
)
_TR_WHY_HOW_RE = re.compile(r"\b(?:neden|niçin|niye|ne olur|nasıl (?:çalış|işle|olu)\w*)|\bnasıl\b(?=.*(?:açıkla|anlat|göster))")
_EN_CONSTRAINT_RE = re.compile(
    r"\b(?:step by step|at (?:least|most)|no more than|up to|within|budget|per (?:day|week|month|year|person)|"
    r"including|with (?:examples|numbers|the numbers)|in about \d+|\bwords\b|pros and cons|trade-?offs?|"
    r"versus|vs\.?(?= )|for and against|each step)"
)
_TR_CONSTRAINT_RE = re.compile(
    r"\b(?:adım adım|en az|en fazla|bütçe|dahil|örnekler\w*|kelime\w*|artı\w* ve eksi\w*|lehin\w* ve aleyhin\w*|"
    r"lehte\w* ve aleyhte\w*|avantaj\w*|dezavantaj\w*|karşılaştırmalı|her adım\w*|gerekçe\w*|rakamlarla|hesaba kat\w*)"
)
_EN_SEQUENCE_RE = re.compile(r"\b(?:then|after that|finally)\b")
_TR_SEQUENCE_RE = re.compile(r"\b(?:ardından|sonra|ayrıca)\b")
_EN_CHATTY_RE = re.compile(
    r"\b(?:hi|hello|hey|good (?:morning|evening|afternoon)|greetings|thanks|thank you|sorry|"
    r"i hope|hope you|anyway|by the way|long story short|quick question|quick one|funny story|"
    r"forgive me|embarrassing|to be honest|honestly|random|silly)\b"
)
_TR_CHATTY_RE = re.compile(
    r"\b(?:merhaba|selam\w*|günaydın|iyi akşamlar|teşekkür\w*|sağ ol\w*|kusura bakma\w*|umarım|neyse|"
    r"bu arada|uzun lafın kısası|kısa bir soru|acelesi yok|komik bir|utanç verici|saçma)\b"
)


def _tr_lower(text: str) -> str:
    """Turkish lower case (I -> ı, İ -> i); English patterns read plain ``str.lower``."""
    return text.replace("İ", "i").replace("I", "ı").lower()


def _count(en: re.Pattern[str], tr: re.Pattern[str], lower: str, tr_lower: str) -> int:
    return len(en.findall(lower)) + len(tr.findall(tr_lower))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def ask_of(text: str) -> tuple[str, str]:
    """(preamble, ask): the request a prompt ends with, and everything before it."""
    parts = _sentences(text)
    if not parts:
        return "", text.strip()
    ask = parts[-1]
    if len(parts) > 1 and len(ask.split()) <= _SHORT_CLOSER_WORDS and not ask.endswith("?"):
        ask = f"{parts[-2]} {ask}"
    head, colon, tail = ask.rpartition(":")
    if colon and tail.strip().endswith("?") and len(tail.split()) >= 3:
        ask = tail.strip()
    cut = text.rfind(ask)
    return (text[:cut].strip() if cut > 0 else ""), ask


def _one(text: str) -> tuple[float, ...]:
    preamble, ask = ask_of(text)
    ask_en, ask_tr = ask.lower(), _tr_lower(ask)
    all_en, all_tr = text.lower(), _tr_lower(text)
    ask_words = len(ask.split())
    all_words = max(1, len(text.split()))
    tasks_in_ask = _count(_EN_TASK_RE, _TR_TASK_RE, ask_en, ask_tr)
    tasks_all = _count(_EN_TASK_RE, _TR_TASK_RE, all_en, all_tr)
    tail_tr = " ".join(ask_tr.split()[-_TR_TAIL_WORDS:])  # a Turkish verb is final: no need to scan more
    lead = bool(_EN_LEAD_RE.search(ask_en) or _TR_LEAD_RE.search(tail_tr))
    factoid = tasks_in_ask == 0 and bool(
        _EN_FACT_RE.search(ask_en) or _TR_FACT_RE.search(ask_tr) or _TR_PARTICLE_RE.search(tail_tr))
    n_chars = max(1, len(text))
    return (
        math.log1p(min(ask_words, _ASK_WORDS_CAP)),
        (all_words - ask_words) / all_words if preamble else 0.0,
        math.log1p(tasks_in_ask),
        float(lead),
        math.log1p(tasks_all + _count(_EN_SEQUENCE_RE, _TR_SEQUENCE_RE, all_en, all_tr)),
        float(factoid),
        float(bool(_EN_WHY_HOW_RE.search(ask_en) or _TR_WHY_HOW_RE.search(ask_tr))),
        math.log1p(_count(_EN_CONSTRAINT_RE, _TR_CONSTRAINT_RE, all_en, all_tr)),
        math.log1p(_count(_EN_CHATTY_RE, _TR_CHATTY_RE, all_en, all_tr)),
        sum(ch.isdigit() for ch in text) / n_chars,
        math.log1p(sum(ch in _MATH_CHARS for ch in text)),
        math.log1p(sum(ch in _CODE_CHARS for ch in text) + text.count("()")),
        math.log1p(len(text)),
    )


def text_features(texts: Sequence[str]) -> np.ndarray:
    """Return a float64 array of shape (len(texts), len(FEATURE_NAMES))."""
    if len(texts) == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float64)
    return np.array([_one(t) for t in texts], dtype=np.float64)
