"""Minimal-pair training data for the verifier: near misses that differ in one thing, and paraphrases.

Public paraphrase data has almost no negatives of the kind a cache must refuse (the same question
about another city, amount, action or group). We make them honestly: (1) question families written
here, each with several rewordings and a slot of one kind — the same slot value in two rewordings is
a paraphrase, two different values of the same kind is a near miss; (2) xSID sentences with one slot
span (city, date, artist, ...) replaced by another value of the same slot type from another sentence;
(3) real sentences with one lexicon word swapped for another of its kind, its opposite, or a number.
Families marked ``heldout`` are never trained on; they measure how the model generalises.
Generated negatives whose change the pair features cannot see at all (an inflection such as
albümü/albümünü swapped in by a slot) are dropped: they are not real near misses, and would
only teach the model to distrust identical-looking pairs.
"""

from __future__ import annotations

import random
import re

__all__ = ["FAMILIES", "family_pairs", "heldout_texts", "negation_swaps", "scope_insertions", "stsb_pairs", "word_swaps",
           "xsid_swaps"]

# (lang, kind, rewordings with {x}, fillers, answer template or "", heldout)
FAMILIES = [
    ("en", "place", ["What is the speed limit in the {x}?", "How fast can I drive in the {x}?",
                     "What's the maximum speed allowed in the {x}?"],
     ["city", "town", "village", "countryside", "school zone"], "The speed limit in the {x} is posted on signs.", False),
    ("en", "entity", ["What's the weather like in {x}?", "How is the weather in {x} today?",
                      "Weather forecast for {x}"],
     ["Paris", "Berlin", "London", "Madrid", "Rome", "Tokyo", "Chicago"], "Today in {x}: sunny, 21 C.", False),
    ("en", "entity", ["How do I get a visa for {x}?", "What do I need to apply for a {x} visa?",
                      "Visa requirements for {x}"],
     ["Germany", "Japan", "Canada", "Brazil", "India", "Australia"], "To get a visa for {x}, apply at its consulate.", False),
    ("en", "number", ["How much does it cost to send {x}?", "What is the fee for sending {x}?",
                      "What fee do you charge to transfer {x}?"],
     ["$50", "$100", "$500", "$1000", "$5000"], "Sending {x} costs a fixed fee.", False),
    ("en", "number", ["Can I withdraw {x} from an ATM?", "Is it possible to take out {x} at a cash machine?"],
     ["100 euros", "300 euros", "500 euros", "1000 euros"], "", False),
    ("en", "action", ["How do I {x} two-factor authentication?", "How can I {x} 2FA on my account?",
                      "Steps to {x} two factor auth"],
     ["enable", "disable"], "To {x} 2FA, open Settings > Security.", False),
    ("en", "action", ["How do I {x} my card?", "Can I {x} my card in the app?", "I want to {x} my card"],
     ["freeze", "unfreeze", "cancel", "activate"], "You can {x} your card in the app.", False),
    ("en", "action", ["How do I {x} a user to the team?", "What are the steps to {x} a team member?"],
     ["add", "remove"], "", False),
    ("en", "scope", ["What is the speed limit for {x}?", "How fast are {x} allowed to drive?"],
     ["drivers", "professional drivers", "truck drivers", "new drivers"], "", False),
    ("en", "scope", ["How much does a {x} ticket cost?", "What's the price of a {x} ticket?"],
     ["child", "adult", "student", "senior"], "A {x} ticket costs a fixed price.", False),
    ("en", "time", ["Will it rain {x}?", "Is rain expected {x}?", "Should I expect rain {x}?"],
     ["today", "tomorrow", "on Monday", "this weekend", "on Friday"], "", False),
    ("en", "time", ["What are your opening hours on {x}?", "When do you open on {x}?", "Are you open on {x}?"],
     ["Monday", "Saturday", "Sunday", "public holidays"], "On {x} we open at 9.", False),
    ("en", "entity", ["How do I reset my {x} password?", "I forgot my {x} password, how do I reset it?"],
     ["Gmail", "Netflix", "Spotify", "Facebook", "Outlook"], "", False),
    ("en", "number", ["Set an alarm for {x}", "Wake me up at {x}", "Please set an alarm at {x}"],
     ["6 am", "7 am", "8 am", "6:30 am"], "", False),
    ("en", "negation", ["{x}", "Tell me: {x}"],
     ["Can I pay with a credit card?", "Can't I pay with a credit card?"], "", False),
    ("en", "entity", ["What is the capital of {x}?", "Which city is the capital of {x}?"],
     ["France", "Spain", "Turkey", "Italy", "Egypt"], "", False),
    ("en", "entity", ["How do I convert {x} to PDF?", "What's the best way to turn a {x} file into a PDF?"],
     ["Word", "Excel", "PowerPoint", "JPEG"], "", False),
    ("tr", "place", ["{x} hız limiti nedir?", "{x} en fazla kaç km hızla gidebilirim?", "{x} azami hız kaç?"],
     ["şehir içi", "otoyolda", "köy yolunda", "okul bölgesinde"], "{x} hız limiti tabelalarda yazar.", False),
    ("tr", "entity", ["{x} hava nasıl?", "{x} bugün hava durumu nedir?", "{x} için hava tahmini"],
     ["İstanbul'da", "Ankara'da", "İzmir'de", "Bursa'da", "Antalya'da"], "{x} hava güneşli.", False),
    ("tr", "action", ["Işığı {x}", "Işıkları {x} lütfen", "Lambayı {x}"],
     ["aç", "kapat"], "", False),
    ("tr", "action", ["İki adımlı doğrulamayı nasıl {x}?", "2FA'yı nasıl {x}?"],
     ["açarım", "kapatırım"], "", False),
    ("tr", "number", ["{x} göndermenin ücreti ne kadar?", "{x} havale etmek kaç lira tutar?"],
     ["100 lira", "500 lira", "1000 lira", "5000 lira"], "", False),
    ("tr", "time", ["{x} yağmur yağacak mı?", "{x} yağmur bekleniyor mu?"],
     ["Bugün", "Yarın", "Pazartesi", "Hafta sonu"], "", False),
    ("tr", "scope", ["{x} bilet fiyatı ne kadar?", "{x} bileti kaç lira?"],
     ["Öğrenci", "Tam", "Çocuk", "Yaşlı"], "", False),
    ("tr", "entity", ["{x} vize için ne gerekir?", "{x} vizesi nasıl alınır?"],
     ["Almanya", "Fransa", "İngiltere", "Japonya"], "", False),
    # Held out: never trained on, used to measure generalisation to unseen frames.
    ("en", "entity", ["What time is it in {x}?", "Current local time in {x}?"],
     ["Lyon", "Osaka", "Denver", "Nairobi"], "", True),
    ("en", "number", ["Is a {x} deposit refundable?", "Do I get my {x} deposit back?"],
     ["$20", "$200", "$2000"], "", True),
    ("en", "action", ["How do I {x} notifications on my phone?", "Steps to {x} phone notifications"],
     ["turn on", "turn off", "mute", "unmute"], "", True),
    ("en", "scope", ["What is the tax rate for {x}?", "How much tax do {x} pay?"],
     ["employees", "self-employed workers", "foreign workers", "students"], "", True),
    ("tr", "entity", ["{x} nüfusu kaç?", "{x} nüfusu ne kadar?"],
     ["Konya'nın", "Trabzon'un", "Kayseri'nin", "Samsun'un"], "", True),
    ("tr", "action", ["Bildirimleri nasıl {x}?", "Telefonda bildirimleri {x} istiyorum"],
     ["açarım", "kapatırım"], "", True),
    ("tr", "number", ["{x} kişilik masa ayırtabilir miyim?", "{x} kişi için rezervasyon yapmak istiyorum"],
     ["İki", "Dört", "Altı", "On"], "", True),
    # Turkish traffic questions (written for semroute; no FAQ text): places, vehicles, licence classes,
    # minimum vs maximum, fine vs points vs deadline, entry vs exit, allowed vs forbidden, negation.
    ("tr", "place", ["{x} otomobil hız sınırı nedir?", "{x} arabayla en fazla kaç km/s gidebilirim?",
                     "{x} otomobiller için azami hız kaç?"],
     ["Şehir içinde", "Şehirlerarası yolda", "Otoyolda", "Köy yolunda", "Bölünmüş yolda"], "", False),
    ("tr", "vehicle", ["{x} otoyolda kaç km/s hızla gidebilir?", "Otoyolda {x} için hız sınırı ne?",
                       "{x} otoyolda en fazla kaç km/s ile gider?"],
     ["kamyonlar", "otobüsler", "motosikletler", "minibüsler", "traktörler", "otomobiller"], "", False),
    ("tr", "vehicle", ["{x} için ehliyet kaç yaşında alınır?", "{x} kullanmak için kaç yaşında olmak gerekir?"],
     ["Otomobil", "Motosiklet", "Kamyon", "Otobüs", "Traktör"], "", False),
    ("tr", "action", ["Otoyolda {x} hız kaç km/s?", "Otoyolda {x} kaç km/s ile gidilir?"],
     ["en az", "en fazla"], "", False),
    ("tr", "action", ["Şehirlerarası yolda {x} hız nedir?", "Şehirlerarası yollarda {x} hız ne kadar?"],
     ["azami", "asgari"], "", False),
    ("tr", "matter", ["Kırmızı ışık ihlalinin {x} nedir?", "Kırmızı ışıkta geçmenin {x} ne kadar?"],
     ["cezası", "ceza puanı", "ödeme süresi"], "", False),
    ("tr", "matter", ["Hız ihlalinde {x} nedir?", "Hız sınırını aşmanın {x} ne?"],
     ["cezası", "ceza puanı", "itiraz süresi"], "", False),
    ("tr", "action", ["Kavşakta sollama yapmak {x}?", "Kavşakta sollamak {x}?"],
     ["yasak mı", "serbest mi"], "", False),
    ("tr", "negation", ["Kırmızı ışıkta sağa {x}?", "Kırmızıda sağa {x}?"],
     ["dönebilir miyim", "dönemez miyim"], "", False),
    ("tr", "negation", ["{x}", "Acaba {x}"],
     ["Kasko zorunlu mu?", "Kasko zorunlu değil mi?"], "", False),
    ("tr", "entity", ["{x} sınıfı ehliyet için yaş sınırı kaç?", "{x} sınıfı ehliyeti kaç yaşında alabilirim?",
                      "{x} ehliyet kaç yaşında alınır?"],
     ["B", "C", "D", "A1", "A2"], "", False),
    ("tr", "action", ["Otoyola {x} ücretli mi?", "Otoyol {x} ücreti ne kadar?"],
     ["giriş", "çıkış"], "", False),
    ("tr", "time", ["{x} köprü geçişi ücretli mi?", "{x} köprüden geçmek paralı mı?"],
     ["Bayramda", "Hafta sonu", "Gece", "Sabah"], "", False),
    ("tr", "scope", ["{x} sürücüler için alkol sınırı kaç promil?", "{x} sürücülerin promil sınırı ne?"],
     ["Hususi", "Ticari", "Profesyonel", "Aday"], "", False),
    ("en", "vehicle", ["What is the speed limit for {x} on the motorway?", "How fast can {x} go on the motorway?"],
     ["cars", "trucks", "buses", "motorcycles", "tractors"], "", False),
    ("en", "action", ["What is the {x} speed on the motorway?", "What's the {x} speed allowed on motorways?"],
     ["minimum", "maximum"], "", False),
    ("en", "matter", ["What is the {x} for running a red light?", "What {x} do I get for running a red light?"],
     ["fine", "penalty points", "deadline"], "", False),
    ("en", "entity", ["At what age can I get a {x} licence?", "What is the minimum age for a {x} licence?"],
     ["class B", "class C", "class D", "class A1", "class A2"], "", False),
    # Held out (Turkish traffic): never trained on; tests and bench/cache_quality.py measure on them.
    ("tr", "place", ["{x} park etmek yasak mı?", "{x} park edebilir miyim?"],
     ["Kaldırıma", "Otobüs durağına", "Yaya geçidine", "Köprü üstüne"], "", True),
    ("tr", "vehicle", ["{x} kullanırken kask takmak zorunlu mu?", "{x} kullanırken kask şart mı?"],
     ["Motosiklet", "Bisiklet", "Traktör"], "", True),
    ("tr", "action", ["Kamyonlar için otoyolda {x} hız nedir?", "Kamyonların otoyoldaki {x} hızı kaç?"],
     ["asgari", "azami"], "", True),
    ("tr", "matter", ["Park ihlalinin {x} nedir?", "Yanlış park etmenin {x} ne?"],
     ["cezası", "ceza puanı", "itiraz süresi"], "", True),
]


def family_pairs(*, heldout: bool, rng: random.Random) -> list[tuple[str, str, str, int, str, str]]:
    """(query, cached, answer, label, kind, lang) pairs from the question families."""
    out = []
    for lang, kind, variants, fillers, answer, held in FAMILIES:
        if held != heldout:
            continue
        for x in fillers:
            for y in fillers:
                for vi, a in enumerate(variants):
                    for vj, b in enumerate(variants):
                        if x == y and vi == vj:
                            continue
                        if x != y and rng.random() > 0.5:
                            continue
                        ans = answer.format(x=y) if answer else ""
                        out.append((a.format(x=x), b.format(x=y), ans, int(x == y), kind, lang))
    return out


def heldout_texts() -> frozenset[str]:
    """Every text the held-out families can produce (tests check their pairs are never trained on)."""
    return frozenset(v.format(x=x) for _, _, variants, fillers, _, held in FAMILIES if held
                     for v in variants for x in fillers)


def stsb_pairs(rows: list[tuple[str, str, float]], *, max_diff: int = 2) -> list[tuple[str, str, str, int, str, str]]:
    """Turkish near misses and paraphrases from STSb-TR, labelled only at the ends of its scale.

    STS scores graded meaning overlap, not "the same question": a 4 still differs in a detail.
    So only score 5 (equivalent) counts as a paraphrase, and only pairs that differ in at most
    ``max_diff`` words with a score <= 2.5 count as near misses ("Bir kadın gitar çalıyor." vs
    "Bir adam gitar çalıyor.", 2.4); everything between is left out.
    """
    out = []
    for a, b, score in rows:
        if score >= 5.0:
            out.append((a, b, "", 1, "stsb", "tr"))
        elif score <= 2.5:
            wa, wb = a.lower().rstrip(".!?").split(), b.lower().rstrip(".!?").split()
            if abs(len(wa) - len(wb)) <= 1 and len(set(wa) ^ set(wb)) <= max_diff and visible(a, b):
                out.append((a, b, "", 0, "stsb", "tr"))
    return out


def xsid_swaps(sentences: list[dict[str, object]], lang: str, rng: random.Random) -> list[tuple[str, str, str, int, str, str]]:
    """Near misses: one slot span replaced with another value of the same slot type."""
    values: dict[str, set[str]] = {}
    for s in sentences:
        for kind, a, b in s["slots"]:  # type: ignore[union-attr]
            values.setdefault(kind, set()).add(" ".join(s["tokens"][a:b]))  # type: ignore[index]
    out = []
    for s in sentences:
        tokens = s["tokens"]
        for kind, a, b in s["slots"]:  # type: ignore[union-attr]
            old = " ".join(tokens[a:b])  # type: ignore[index]
            choices = sorted(v for v in values[kind] if v.lower() != old.lower())
            if not choices or kind.endswith("-part"):
                continue
            new = rng.choice(choices)
            if _same_number(old, new) or _same_slot_value(old, new, lang):  # a rewording, not a near miss
                continue
            text = _detok(tokens[:a] + [new] + tokens[b:])  # type: ignore[index, operator]
            if not visible(text, _detok(tokens)):  # type: ignore[arg-type]
                continue
            out.append((text, _detok(tokens), "", 0, f"slot:{kind}", lang))  # type: ignore[arg-type]
    return out


# Slot values xSID uses for one thing in different words (values of its valid split, both languages):
# "What films are on?" for "What movies are on?" is a rewording, so a swap between two values of
# one group is no near miss. A Turkish value may carry a suffix ("sinemada", "yıldızla"); an
# English one is matched whole ("hereford" is not "here").
XSID_SAME_VALUES: tuple[frozenset[str], ...] = tuple(frozenset(group.split("|")) for group in (
    "this|current|bu|mevcut|şu anki",
    "cinema|movie theatre|movie theater|movie house|sinema|sinema salon|film salon",
    "movies|films|movie|film",
    "movie schedules|movie schedule|movie times|schedule|film seans|film saat|seans",
    "points|stars|puan|yıldız",
    "best|top|top-rated|top rated|highly rated|most popular|popular|en iyi|en popüler|popüler|çok beğenilen|"
    "yüksek puan alan",
    "song|tune|track|melody|record|şarkı|melodi|parça|plak|plağ",
    "picture|photograph|photo|resim|fotoğraf",
    "tv show|television show|tv programı|tv program",
    "cold|colder|chilly|chillier|soğuk|daha soğuk",
    "hot|hotter|sıcak|daha sıcak",
    "storm|stormy|storms|fırtına|fırtınalı",
    "wind|windy|rüzgar|rüzgarlı",
    "snow|snowy|kar|karlı",
    "rain|rainy|raining|yağmur|yağmurlu",
    "here|near|nearby|near me|close by|closest|nearest|in the area|the area|in the neighbourhood|neighbouring|"
    "neighboring|current location|current position|current spot|my current location|yakın|yakınlar|"
    "şu anda bulunduğum bölge|şu an bulunduğum yer",
))
# What may follow a Turkish member: nothing, or a suffix as Turkish suffixes begin (a vowel, or d/t/l/n/s/y
# then a vowel, or -ki): "bugün" is not "bu" + a suffix.
_TURKISH_SUFFIX = re.compile(r"(?:['’]?(?:[aeıioöuü]|[dtlnsy][aeıioöuü]|ki)[a-zçğıöşü]{0,6})?")


def _same_slot_value(a: str, b: str, lang: str) -> bool:
    """Two slot values of one ``XSID_SAME_VALUES`` group, in a sentence of ``lang``."""
    from semroute.hits.analysis import lower

    def groups(value: str) -> set[int]:
        low = lower(value, lang == "tr")
        return {i for i, group in enumerate(XSID_SAME_VALUES) for member in group
                if low == member or (lang == "tr" and low.startswith(member)
                                     and _TURKISH_SUFFIX.fullmatch(low[len(member):]))}

    return bool(groups(a) & groups(b))


def _same_number(a: str, b: str) -> bool:
    """Two slot values that are one number written two ways ("0" and "sıfır", "two" and "2")."""
    from semroute.hits.pairs import analyse

    x, y = analyse(a), analyse(b)
    return bool(x.numbers) and x.numbers == y.numbers and not x.content and not y.content


def visible(query: str, cached: str) -> bool:
    """Whether the pair features can see any change at all (inflections like albümü/albümünü are not one)."""
    from semroute.hits.pairs import FEATURE_NAMES, PairFeatures

    x = PairFeatures({}, default_idf=1.0)(query, cached, None, 1.0)
    flags = ("num_mismatch", "num_one_side", "neg_mismatch", "opposite", "kind_mismatch", "proper_diff", "scope_one_side")
    return x[FEATURE_NAMES.index("jaccard")] < 0.99 or any(x[FEATURE_NAMES.index(f)] for f in flags)


def _detok(tokens: list[str]) -> str:
    return re.sub(r" ([?.!,'])", r"\1", " ".join(tokens))


_SWAPS = {
    "number": ["1", "2", "3", "5", "10", "20", "50", "100", "200", "500", "1000"],
}


def word_swaps(texts: list[tuple[str, str]], rng: random.Random, *, limit: int) -> list[tuple[str, str, str, int, str, str]]:
    """Near misses from real sentences: one kind word, opposite or number swapped for another."""
    from semroute.hits.lexicon import KINDS, OPPOSITES

    opposite = {}
    for a, b in OPPOSITES:
        if " " not in a and " " not in b:
            opposite.setdefault(a, b)
            opposite.setdefault(b, a)
    kind_of = {w: k for k, ws in KINDS.items() for w in ws}
    out = []
    for text, lang in texts:
        words = text.split()
        spots = []
        for i, w in enumerate(words):
            core = w.strip("?.!,").lower()
            if core.isdigit():
                spots.append((i, core, [n for n in _SWAPS["number"] if n != core], "number"))
            elif core in opposite:
                spots.append((i, core, [opposite[core]], "action"))
            elif core in kind_of and len(core) > 3:
                peers = sorted(m for m in KINDS[kind_of[core]] if m != core and " " not in m)
                spots.append((i, core, peers, "kind"))
        if not spots:
            continue
        i, core, choices, kind = rng.choice(spots)
        new = rng.choice(choices)
        swapped = list(words)
        swapped[i] = words[i].lower().replace(core, new)
        if not visible(" ".join(swapped), text):
            continue
        out.append((" ".join(swapped), text, "", 0, kind, lang))
        if len(out) >= limit:
            break
    return out


_EN_AUX = re.compile(r"\b(can|is|are|do|does|did|will|should|could|would|was|were|have|has)\b", re.IGNORECASE)
_EN_NEG = re.compile(r"\b(can't|cannot|isn't|aren't|don't|doesn't|didn't|won't|shouldn't|couldn't|wouldn't|wasn't|weren't|haven't|hasn't)\b", re.IGNORECASE)
_TR_YOR = re.compile(r"\b(\w+?)([ıiuü])yor")
_TR_NEG_YOR = re.compile(r"\b(\w+?)m([ıiuü])yor")


def _negate(text: str, lang: str) -> str | None:
    """The text with its first auxiliary (EN) or present-tense verb / var (TR) negated, or un-negated."""
    if lang == "en":
        if _EN_NEG.search(text):
            return _EN_NEG.sub(lambda m: {"can't": "can", "cannot": "can", "won't": "will"}.get(
                m.group(1).lower(), m.group(1)[:-3]), text, count=1)
        if _EN_AUX.search(text):
            return _EN_AUX.sub(lambda m: {"can": "can't", "will": "won't"}.get(m.group(1).lower(), m.group(1) + "n't"),
                               text, count=1)
        return None
    if _TR_NEG_YOR.search(text):
        return _TR_NEG_YOR.sub(r"\1\2yor", text, count=1)
    if _TR_YOR.search(text):
        return _TR_YOR.sub(r"\1m\2yor", text, count=1)
    if re.search(r"\bvar\b", text):
        return re.sub(r"\bvar m[ıi]\b", "yok mu", re.sub(r"\bvar\b(?! m)", "yok", text, count=1), count=1)
    return None


def negation_swaps(texts: list[tuple[str, str]], rng: random.Random, *, limit: int) -> list[tuple[str, str, str, int, str, str]]:
    """Near misses from real sentences: negated (or un-negated) once, the rest kept."""
    out = []
    for text, lang in texts:
        neg = _negate(text, lang)
        if neg is None or neg == text or not visible(neg, text):
            continue
        out.append((neg, text, "", 0, "negation", lang) if rng.random() < 0.5 else (text, neg, "", 0, "negation", lang))
        if len(out) >= limit:
            break
    return out


_EN_SCOPE = ("professional", "commercial", "international", "business", "student", "senior", "foreign", "premium",
             "virtual", "joint", "temporary", "raw", "electric", "private", "public", "used")
_TR_SCOPE = ("profesyonel", "ticari", "uluslararası", "kurumsal", "öğrenci", "yabancı", "sanal", "ortak", "geçici",
             "elektrikli", "özel", "ikinci el")


def scope_insertions(texts: list[tuple[str, str]], rng: random.Random, *, limit: int) -> list[tuple[str, str, str, int, str, str]]:
    """Near misses from real sentences: a modifier narrows one noun (drivers -> professional drivers)."""
    from semroute.hits.lexicon import STOPWORDS

    out = []
    for text, lang in texts:
        words = text.split()
        spots = [i for i, w in enumerate(words) if i > 0 and w.strip("?.!,").isalpha() and len(w) > 3
                 and w.strip("?.!,").lower() not in STOPWORDS]
        if not spots:
            continue
        i = rng.choice(spots)
        modified = words[:i] + [rng.choice(_EN_SCOPE if lang == "en" else _TR_SCOPE)] + words[i:]
        narrowed = " ".join(modified)
        out.append((narrowed, text, "", 0, "scope", lang) if rng.random() < 0.5 else (text, narrowed, "", 0, "scope", lang))
        if len(out) >= limit:
            break
    return out
