"""Verifier and consensus artifacts per embedder, and Turkish pairs with the real multilingual embedder.

The Turkish pairs below were written for this test and are checked to be absent from every text
the verifier is trained or tuned on (question families, the traffic FAQ and its rewordings, TQP
train), so they measure generalisation, not memory.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from semroute.artifacts import model_dir, shipped
from semroute.errors import ModelMismatch
from semroute.hits.consensus import AnswerConsensus
from semroute.hits.verify import PLACEHOLDER_ANSWER, PairVerifier
from semroute.types import CacheEntry, Candidate

E5 = "multilingual-e5-small"
MINILM = "all-MiniLM-L6-v2"
USE = "use-multilingual-v3"
DIMS = {E5: 384, MINILM: 384, USE: 512}

NEAR_MISSES_TR = [
    ("vehicle", "Kamyonlar şehirlerarası yolda en fazla kaç km/s gidebilir?",
     "Otobüsler şehirlerarası yolda en fazla kaç km/s gidebilir?"),
    ("min/max", "Otoyolda motosikletle en az kaç km/s hızla gitmeliyim?",
     "Otoyolda motosikletle en fazla kaç km/s hızla gidebilirim?"),
    ("entry/exit", "Köprü girişinde durmak yasak mı?", "Köprü çıkışında durmak yasak mı?"),
    ("fine/points", "Emniyet kemeri takmamanın cezası nedir?", "Emniyet kemeri takmamanın ceza puanı nedir?"),
    ("licence class", "D sınıfı ehliyet için sağlık raporu gerekir mi?", "B sınıfı ehliyet için sağlık raporu gerekir mi?"),
    ("allowed/forbidden", "Tünelde şerit değiştirmek serbest mi?", "Tünelde şerit değiştirmek yasak mı?"),
    ("place", "Köy yolunda traktör hız sınırı nedir?", "Şehir içinde traktör hız sınırı nedir?"),
    ("negation", "Araç muayenesi zorunlu değil mi?", "Araç muayenesi zorunlu mu?"),
]

# Written for lexicon v4 (limits that mean a maximum, ordinals, start vs cancel, new scope words)
# before any shipped verifier was asked about them; whatever they said is kept (strict xfail marks).
NEAR_MISSES_V4 = [
    ("extremum", "Şehir içinde kamyonlar için en düşük hız ne?", "Şehir içinde kamyonlar için hız limiti ne?"),
    ("extremum", "What is the lowest speed allowed on a motorway?", "What is the motorway speed limit?"),
    ("extremum", "Otoyolda asgari hız kaç km?", "Otoyolda hız sınırı kaç km?"),
    ("ordinal", "İkinci ihlalde ceza puanı kaç?", "Üçüncü ihlalde ceza puanı kaç?"),
    ("ordinal", "Can I renew my licence in the third year?", "Can I renew my licence in the 4th year?"),
    ("scope", "Aday sürücüler otoyolda kaç km ile gidebilir?", "Sürücüler otoyolda kaç km ile gidebilir?"),
    ("action", "How do I cancel my gym membership?", "How do I start a gym membership?"),
    ("scope", "Do soldiers pay the bridge toll?", "Do drivers pay the bridge toll?"),
]

# Same question in other words, where v4's new rules could wrongly see a difference.
PARAPHRASES_V4 = [
    ("Şehirlerarası yolda otobüsler için azami hız nedir?", "Şehirlerarası yolda otobüslerin hız sınırı nedir?"),
    ("What is the highest speed allowed for trucks in town?", "What is the speed limit for trucks in town?"),
    ("Can I take two bags on the bus?", "Can I take 2 bags on the bus?"),
    ("İkinci el araç alırken nelere dikkat etmeliyim?", "Kullanılmış araç alırken nelere dikkat etmeliyim?"),
    ("Is the fifth lesson free?", "Is the 5th lesson free?"),
]

# Written after lexicon v4 was final and asked once (set B, never used to change anything):
# near misses of road users, documents, weather, paying vs contesting, min vs limit, allowed vs
# required, ordinals, counts and scope, and paraphrases around the same words. One paraphrase was
# dropped after that one run: its first question turned out to be a training text.
NEAR_MISSES_B = [
    ('Do motorcyclists need a helmet on a bridge?', 'Do cyclists need a helmet on a bridge?'),
    ('Yayalar otoyolda yürüyebilir mi?', 'Bisikletliler otoyolda gidebilir mi?'),
    ('Can a passenger sit in the front seat with a baby?', 'Can a driver sit in the front seat with a baby?'),
    ('Sisli havada uzun far yakılır mı?', 'Karlı havada uzun far yakılır mı?'),
    ('What is the speed limit on icy roads?', 'What is the speed limit on wet roads?'),
    ('Sigortasız araç kullanmanın cezası nedir?', 'Ehliyetsiz araç kullanmanın cezası nedir?'),
    ('How do I renew my registration?', 'How do I renew my licence?'),
    ('Is a passport enough to drive in Turkey?', 'Is a licence enough to drive in Turkey?'),
    ('Hız sınırını aşmanın cezasına nasıl itiraz ederim?', 'Hız sınırını aşmanın cezasını nasıl öderim?'),
    ('Can I pay a parking fine online?', 'Can I appeal a parking fine online?'),
    ('Otoyolda en az kaç km ile gitmeliyim?', 'Otoyolda hız limiti kaç km?'),
    ('What is the lowest allowed speed in a tunnel?', 'What is the speed limit in a tunnel?'),
    ('Is it mandatory to carry a first aid kit?', 'Is it allowed to carry a first aid kit?'),
    ('Kış lastiği takmak zorunlu mu?', 'Kış lastiği takmak serbest mi?'),
    ('Do I lose points for a third speeding offence?', 'Do I lose points for a fourth speeding offence?'),
    ('Altıncı ayda taksit ödemesi kaç lira?', 'Yedinci ayda taksit ödemesi kaç lira?'),
    ('Can I take three passengers on a motorcycle?', 'Can I take two passengers on a motorcycle?'),
    ('İki yolcu ile motosiklete binebilir miyim?', 'Bir yolcu ile motosiklete binebilir miyim?'),
    ('Do pensioners get a discount on tolls?', 'Do students get a discount on tolls?'),
    ('Askerler için ehliyet harcı var mı?', 'Ehliyet harcı var mı?'),
    ('How do I cancel my car insurance?', 'How do I renew my car insurance?'),
    ('Park cezasını nasıl iptal ettiririm?', 'Park cezasını nasıl öderim?'),
    ('What is the alcohol limit for novice drivers?', 'What is the alcohol limit for drivers?'),
    ('Gece otoyolda hız sınırı kaç?', 'Gündüz otoyolda hız sınırı kaç?'),
]

PARAPHRASES_B = [
    ('How can I renew my driving licence?', 'What do I need to do to renew my driving licence?'),
    ('Ehliyetimi nasıl yenilerim?', 'Ehliyet yenileme nasıl yapılır?'),
    ('What is the fine for not wearing a seat belt?', 'How much is the penalty for driving without a seatbelt?'),
    ('Park cezası nasıl ödenir?', 'Park cezasını nereden ödeyebilirim?'),
    ('Can I drive with a foreign licence?', 'Is a foreign driving licence valid here?'),
    ('Is it allowed to drive with headphones?', 'Can I wear headphones while driving?'),
    ('Otoyolda kamyonların hız sınırı kaç?', 'Kamyonlar otoyolda en fazla kaç km ile gidebilir?'),
    ('How many passengers can a motorcycle carry?', 'How many people can ride on a motorcycle?'),
    ('Sisli havada hangi farlar yakılmalı?', 'Sis olduğunda hangi farları kullanmalıyım?'),
    ('Do I need winter tyres in snow?', 'Are winter tyres required when it snows?'),
    ('Trafik cezasına nasıl itiraz edilir?', 'Trafik cezasına itiraz etmek için ne yapmalıyım?'),
]

# Set D: near misses beyond traffic, written after the period, credential and account-action words
# were added and asked once (set C, written to find those gaps, is not kept: it was tuned on).
NEAR_MISSES_D = [
    ('Is there a weekly limit on ATM withdrawals?', 'Is there a daily limit on ATM withdrawals?'),
    ('How much is the yearly membership?', 'How much is the monthly membership?'),
    ('I forgot my PIN, what should I do?', 'I forgot my password, what should I do?'),
    ('How do I change my username?', 'How do I change my password?'),
    ('Parolamı nasıl değiştiririm?', 'Kullanıcı adımı nasıl değiştiririm?'),
    ('Can I postpone my exam?', 'Can I cancel my exam?'),
    ('Toplantıyı nasıl ertelerim?', 'Toplantıyı nasıl iptal ederim?'),
    ('How do I freeze my credit card?', 'How do I close my credit card?'),
    ('Kartımı nasıl dondurabilirim?', 'Kartımı nasıl kapatabilirim?'),
    ('Can I reschedule my delivery?', 'Can I cancel my delivery?'),
    ('Is the gym open on public holidays?', 'Is the gym open on weekends?'),
    ('How do I unsubscribe from the newsletter?', 'How do I subscribe to the newsletter?'),
    ('Aylık aidat ne kadar?', 'Giriş aidatı ne kadar?'),
    ('What is the late fee for a quarterly payment?', 'What is the late fee for a monthly payment?'),
    ('Do seniors get a discount on the annual pass?', 'Do seniors get a discount on the daily pass?'),
    ('How long is the warranty for refurbished phones?', 'How long is the warranty for new phones?'),
    ('Can I pay my rent in cash?', 'Can I pay my rent by card?'),
    ('Is parking free after 6 pm?', 'Is parking free before 6 pm?'),
    ('Öğrenciler için aylık abonman kaç lira?', 'Öğrenciler için yıllık abonman kaç lira?'),
    ('How do I delete my account?', 'How do I deactivate my account?'),
]

# What the shipped sets got wrong when first asked (strict: a better model asks for the mark to go).
# The two paraphrase vetoes were the same on lexicon v3: the pair models see "azami"/"highest"
# swapped for "sınır"/"limit" and distrust the swap.
V4_GAPS = {
    (MINILM, "What is the lowest speed allowed on a motorway?"): "MiniLM's set weighs an opposite little: P 0.58",
    (MINILM, "Şehirlerarası yolda otobüsler için azami hız nedir?"): "vetoed on v3 as well (P 0.23)",
    (USE, "Şehirlerarası yolda otobüsler için azami hız nedir?"): "vetoed on v3 as well (P 0.42)",
    (USE, "What is the highest speed allowed for trucks in town?"): "vetoed on v3 as well (P 0.81 < 0.9)",
    # set B: having a fine cancelled (iptal) vs paying it (öde) is no opposite in the lexicon
    (MINILM, "Park cezasını nasıl iptal ettiririm?"): "iptal vs öde is no opposite (P 0.58)",
    (USE, "Is the gym open on public holidays?"): "a public holiday is no day of the lexicon's (P 0.99)",
}

PARAPHRASES_TR = [
    ("Kışın kar zinciri takmak mecburi mi?", "Kış aylarında kar zinciri takmak zorunlu mu?"),
    ("Trafik cezasına nereden itiraz edebilirim?", "Trafik cezasına itiraz nereye yapılır?"),
    ("Araç ruhsatım kaybolursa ne yapmalıyım?", "Ruhsatımı kaybettim, ne yapmam gerekir?"),
    ("Ehliyetimi kaybettim, yenisini nasıl alırım?", "Kaybolan ehliyetin yenisi nasıl çıkarılır?"),
]


def _training_texts() -> set[str]:
    from semroute.training import minimal_pairs as mp
    from semroute.training.sources import SharedData

    import random

    texts = {t for q, c, *_ in mp.family_pairs(heldout=False, rng=random.Random(0)) for t in (q, c)}
    with open(shipped("data", "traffic_faq.csv"), encoding="utf-8") as fh:
        texts |= {r["question"] for r in csv.DictReader(fh)}
    with open(shipped("data", "traffic_paraphrases.csv"), encoding="utf-8") as fh:
        texts |= {r["query"] for r in csv.DictReader(fh)}
    data = SharedData(shipped("data").parent.parent / "shared" / "data")
    texts |= {t for pair in data.tqp_pairs("train") for t in pair}
    return {t.strip().lower() for t in texts}


def test_the_turkish_test_pairs_are_held_out_of_training():
    seen = _training_texts()
    assert len(seen) > 15_000  # the check reads what training reads (TQP train alone: ~19k texts)
    written = [p[1:] for p in NEAR_MISSES_TR + NEAR_MISSES_V4] + PARAPHRASES_TR + PARAPHRASES_V4
    for pair in written + NEAR_MISSES_B + PARAPHRASES_B + NEAR_MISSES_D:
        for text in pair:
            assert text.strip().lower() not in seen, text


@pytest.mark.parametrize("name", [MINILM, E5, USE])
def test_shipped_artifacts_load_for_their_embedder_and_refuse_another(name):
    other = E5 if name == MINILM else MINILM
    dim = DIMS[name]
    verifier = PairVerifier.load(model_dir("verifier", name), embedder=name, dim=dim)
    assert verifier.card["embedder"] == name and verifier.card["dim"] == dim
    assert {"training_data", "metrics", "operating_point", "word_vectors"} <= set(verifier.card)
    consensus = AnswerConsensus.load(model_dir("consensus", name), verifier.probability, embedder=name, dim=dim)
    assert consensus.card["embedder"] == name
    with pytest.raises(ModelMismatch, match="embedder"):
        PairVerifier.load(model_dir("verifier", name), embedder=other, dim=dim)
    with pytest.raises(ModelMismatch, match="embedder"):
        AnswerConsensus.load(model_dir("consensus", name), verifier.probability, embedder=other, dim=dim)
    with np.load(model_dir("verifier", name) / "model.npz", allow_pickle=False) as data:
        vocab = [str(w) for w in data["wp_vocab"]]
    # The word table comes from the artifact's own embedder: MiniLM's set keeps MiniLM's word
    # pieces; any other embedder's set holds whole words it embedded itself.
    pieces = any(w.startswith("##") for w in vocab)
    assert pieces == (name == MINILM)
    if name != MINILM:
        assert "otoyol" in vocab


@pytest.fixture(scope="module")
def e5():
    from semroute.embed import make_embedder

    embedder = make_embedder(E5)
    embedder.embed(["ısınma"])
    return embedder


@pytest.fixture(scope="module")
def e5_verifier(e5):
    return PairVerifier.default(embedder=e5.name, dim=e5.dim)


def _candidate(embedder, query: str, cached: str) -> Candidate:
    vq, vc = embedder.embed([query, cached])
    entry = CacheEntry(id="e", key="k", scope="s", namespace="n", question=cached, answer=PLACEHOLDER_ANSWER,
                       vector=vc, created_at=0.0)
    return Candidate(entry=entry, similarity=float(vq @ vc))


@pytest.mark.parametrize(("kind", "query", "cached"), NEAR_MISSES_TR)
def test_e5_verifier_refuses_turkish_near_misses(e5, e5_verifier, kind, query, cached):
    verdict = e5_verifier.accept(query, _candidate(e5, query, cached))
    assert not verdict.accepted, f"{kind}: {verdict.reason}"


@pytest.mark.parametrize(("query", "cached"), PARAPHRASES_TR)
def test_e5_pair_model_approves_turkish_paraphrases(e5, e5_verifier, query, cached):
    # The pair model must not veto a paraphrase; whether it is served also depends on the cosine
    # floor, which the shipped operating point sets high (0.97, chosen at precision 0.97 on the
    # tuning caches): measured, two of these four score 0.93-0.94 and are refused by the floor alone.
    candidate = _candidate(e5, query, cached)
    assert e5_verifier.probability(query, cached, candidate.similarity) >= e5_verifier.threshold
    verdict = e5_verifier.accept(query, candidate)
    assert verdict.accepted == (candidate.similarity >= e5_verifier.min_similarity), verdict.reason


def _known_gap(request, embedder: str, query: str) -> None:
    reason = V4_GAPS.get((embedder, query))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"known gap: {reason}"))


@pytest.fixture(scope="module", params=[MINILM, E5, USE])
def shipped_set(request):
    """Each embedder with the verifier shipped for it."""
    from semroute.embed import make_embedder

    embedder = make_embedder(request.param)
    return embedder, PairVerifier.default(embedder=embedder.name, dim=embedder.dim)


@pytest.mark.parametrize(("kind", "query", "cached"), [*NEAR_MISSES_V4, *(("set B", q, c) for q, c in NEAR_MISSES_B),
                                                      *(("set D", q, c) for q, c in NEAR_MISSES_D)])
def test_every_shipped_verifier_refuses_the_v4_near_misses(request, shipped_set, kind, query, cached):
    embedder, verifier = shipped_set
    _known_gap(request, embedder.name, query)
    verdict = verifier.accept(query, _candidate(embedder, query, cached))
    assert not verdict.accepted, f"{embedder.name}, {kind}: {verdict.reason}"


@pytest.mark.parametrize(("query", "cached"), PARAPHRASES_V4)
def test_no_shipped_pair_model_vetoes_the_v4_paraphrases(request, shipped_set, query, cached):
    # The veto only: whether the pair is served also depends on each set's cosine floor.
    embedder, verifier = shipped_set
    _known_gap(request, embedder.name, query)
    candidate = _candidate(embedder, query, cached)
    p = verifier.probability(query, cached, candidate.similarity)
    assert p >= verifier.threshold, f"{embedder.name}: P {p:.3f} < {verifier.threshold} at cosine {candidate.similarity:.3f}"


@pytest.mark.parametrize(("query", "cached"), PARAPHRASES_B)
def test_the_default_pair_model_vetoes_no_set_b_paraphrase(e5, e5_verifier, query, cached):
    # The default set only: e5's pair model approves all eleven, and its cosine floor (0.97) then
    # serves four of them; USE's model (threshold 0.9) vetoes six and MiniLM's one (README).
    candidate = _candidate(e5, query, cached)
    assert e5_verifier.probability(query, cached, candidate.similarity) >= e5_verifier.threshold
