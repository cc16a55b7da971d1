"""The router reads the ask, not the length: the hard set, its exclusion from training, the
ask features (English and Turkish) and the shipped per-embedder complexity artifacts.

Accuracy on the hard set itself is a benchmark (``bench/router_hard.py``), never asserted here:
tuning tests to those rows would turn the held-out set into training data. The real-embedder
checks use their own small sanity list, written apart from both the hard set and training data.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from semroute.artifacts import model_dir, shipped
from semroute.errors import ModelMismatch
from semroute.routing.classify import LogisticComplexityClassifier
from semroute.routing.features import FEATURE_NAMES, LENGTH_FREE, ask_of, text_features
from semroute.training.complexity import labelled_set, train

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
TRAINING_FILES = ("complexity_train.csv", "complexity_routing.csv", "complexity_written.csv", "complexity_ask.csv")


def rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def feature(text: str, name: str) -> float:
    return float(text_features([text])[0, FEATURE_NAMES.index(name)])


# -- the hard set --------------------------------------------------------------------------


def test_the_hard_set_is_labelled_bilingual_and_balanced_across_its_kinds():
    hard = rows("complexity_hard.csv")
    assert len(hard) >= 200 and set(hard[0]) == {"prompt", "label", "lang", "kind"}
    kinds = {"long_simple": "simple", "short_complex": "complex", "control_simple": "simple", "control_complex": "complex"}
    for kind, label in kinds.items():
        for lang in ("en", "tr"):
            of_kind = [r for r in hard if r["kind"] == kind and r["lang"] == lang]
            assert len(of_kind) >= 20 and {r["label"] for r in of_kind} == {label}, (kind, lang)
    long_simple = [len(r["prompt"]) for r in hard if r["kind"] == "long_simple"]
    short_complex = [len(r["prompt"]) for r in hard if r["kind"] == "short_complex"]
    assert min(long_simple) > max(short_complex)  # length points the wrong way on every such row
    assert len({r["prompt"].casefold() for r in hard}) == len(hard)


@pytest.mark.parametrize("held_out", ["complexity_hard.csv", "complexity_probe.csv"])
def test_no_held_out_prompt_or_its_question_is_in_any_training_file(held_out):
    hard = rows(held_out)
    seen = {r["prompt"].strip().casefold() for name in TRAINING_FILES for r in rows(name)}
    assert not [r["prompt"] for r in hard if r["prompt"].strip().casefold() in seen]
    # Nor the question after a chatty preamble: the set measures generalisation, not recall.
    asks = [ask_of(r["prompt"])[1] for r in hard if r["kind"] == "long_simple"]
    assert not [a for a in asks if a.casefold() in seen]


class HashEmbedder:
    """A real (if crude) embedder: hashed bag of words, unit length. Fast and deterministic."""

    name = "hash-bow"
    dim = 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            out[i, 0] += 1e-3  # never a zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_training_drops_hard_set_prompts_and_counts_them_on_the_card():
    hard = rows("complexity_hard.csv")
    written = [r for r in rows("complexity_written.csv") if r["label"] == "simple"][:30]
    written += [r for r in rows("complexity_written.csv") if r["label"] == "complex"][:30]
    leaked = [hard[0], hard[-1]]
    data = labelled_set(written + [{"prompt": r["prompt"], "label": r["label"]} for r in leaked], name="mixed.csv")
    routing = labelled_set(written[:15] + written[30:45] + [{"prompt": hard[1]["prompt"], "label": "complex"}], name="routing.csv")
    clf, card = train(data, embedder=HashEmbedder(), routing=routing, keep_out=[r["prompt"] for r in hard])
    assert card["training"]["kept_out_rows"] == 3
    assert card["training"]["rows"] == 60 and card["routing"]["rows"] == 30
    assert clf.n_train_ == 60


# -- features: the ask, not the length -------------------------------------------------------


def test_the_ask_is_the_question_after_a_chatty_preamble_in_english_and_turkish():
    en = ("Hi! I hope you're well. My cousin and I argued about this at dinner for an hour. "
          "Anyway, quick question: what is the capital of Belgium?")
    tr = ("Merhaba, umarım iyisinizdir. Dün akşam komşularla uzun uzun sohbet ettik, çay demledik. "
          "Neyse, sorum şu: Belçika'nın başkenti neresidir?")
    assert ask_of(en)[1] == "what is the capital of Belgium?"
    assert ask_of(tr)[1] == "Belçika'nın başkenti neresidir?"
    assert ask_of(en)[0].startswith("Hi! I hope")
    for text, short in ((en, "What is the capital of Belgium?"), (tr, "Belçika'nın başkenti neresidir?")):
        assert feature(text, "ask_words") == feature(short, "ask_words")  # the preamble adds no ask
        assert feature(text, "factoid") == feature(short, "factoid") == 1.0
        assert feature(text, "preamble_share") > 0.7 and feature(short, "preamble_share") == 0.0
        assert feature(text, "chatty") > 0 and feature(short, "chatty") == 0
    # A very short closing instruction is read with the sentence it qualifies.
    assert ask_of("A train leaves at 9 at 80 km/h. When does the second catch up? Show each step.")[1] == (
        "When does the second catch up? Show each step.")


@pytest.mark.parametrize("ask", [
    "Compare TCP and UDP.", "Plan a weekend in Prague.", "Can you calculate the VAT on 300?",
    "Draft a complaint letter.", "Prove that 17 is prime.", "Debug my failing unit test.",
    "Analyse the causes of the Cold War.", "Explain how batteries store energy.",
    "TCP ile UDP'yi karşılaştır.", "Prag için bir hafta sonu planla.", "300 liranın KDV'sini hesaplar mısın?",
    "Bir şikâyet dilekçesi taslağı hazırla.", "17'nin asal olduğunu kanıtla.", "Soğuk Savaş'ın nedenlerini analiz et.",
    "Pillerin enerjiyi nasıl depoladığını açıkla.", "Bana bir veda mektubu yaz.",
])
def test_task_verbs_mark_an_imperative_ask_in_english_and_turkish(ask):
    assert feature(ask, "task_verbs") > 0 and feature(ask, "lead_task") == 1.0
    assert feature(ask, "factoid") == 0.0


@pytest.mark.parametrize("text", [
    "What is the capital of Peru?", "Who wrote Dracula?", "How many legs does an ant have?",
    "Peru'nun başkenti neresidir?", "Drakula'yı kim yazdı?", "Karıncanın kaç bacağı vardır?",
    "Domates bir meyve midir?", "Yaz tatili ne zaman başlıyor?",  # "yaz" here is summer, not "write"
    # Narrative forms of a task stem tell a story; they ask for nothing.
    "Dün kuzenimle uzun uzun tartıştık ve o bana eski bir hikâye anlattı. Marakeş hangi ülkededir?",
    "My friend is planning a trip and she was writing postcards all day. Where is Marrakesh?",
])
def test_lookup_questions_are_factoid_even_after_story_verbs(text):
    assert feature(text, "factoid") == 1.0
    assert feature(text, "task_verbs") == 0.0 and feature(text, "lead_task") == 0.0


def test_constraints_subtasks_and_why_how_in_both_languages():
    assert feature("Compare them step by step, with examples, and then recommend one.", "constraints") > 0
    assert feature("Bunları adım adım, örneklerle karşılaştır ve ardından birini öner.", "constraints") > 0
    assert feature("Compare X and Y, then plan Z.", "subtasks") > feature("Compare X and Y.", "subtasks")
    assert feature("Why do leaves change colour?", "why_how") == 1.0
    assert feature("Yapraklar neden renk değiştirir?", "why_how") == 1.0
    assert feature("How tall is the Eiffel Tower?", "why_how") == 0.0


def test_ask_length_is_capped_and_raw_length_is_left_to_the_routing_head():
    long_ask = "Summarise " + "this very long pasted paragraph " * 40
    assert feature(long_ask, "ask_words") == feature(long_ask[: len(long_ask) // 2], "ask_words")
    assert "log_chars" in LENGTH_FREE
    assert text_features([]).shape == (0, len(FEATURE_NAMES))


# -- the shipped artifacts, one per embedder ---------------------------------------------------


def shipped_complexity() -> list[Path]:
    return sorted(p.parent for p in shipped("models").glob("*/complexity/card.json"))


def test_a_complexity_model_ships_for_every_built_in_embedder():
    names = {p.parent.name for p in shipped_complexity()}
    assert {"all-MiniLM-L6-v2", "multilingual-e5-small", "use-multilingual-v3"} <= names


@pytest.mark.parametrize("where", shipped_complexity(), ids=lambda p: p.parent.name)
def test_each_shipped_artifact_loads_for_its_embedder_and_refuses_another(where):
    name = where.parent.name
    assert model_dir("complexity", name) == where
    card = json.loads((where / "card.json").read_text(encoding="utf-8"))
    clf = LogisticComplexityClassifier.load(embedder_name=name, dim=card["dim"])
    assert card["format"] == "semroute.complexity/3" and card["features"] == list(FEATURE_NAMES)
    assert card["embedder"]["name"] == name and clf.dim_ == card["dim"]
    assert card["heldout"]["metrics"]["accuracy"] >= 0.95 and card["training"]["kept_out_rows"] == 0
    other = next(n for n in ("all-MiniLM-L6-v2", "multilingual-e5-small") if n != name)
    with pytest.raises(ModelMismatch, match=other):
        LogisticComplexityClassifier.load(where, embedder_name=other)
    with pytest.raises(ModelMismatch, match=str(card["dim"] + 1)):
        LogisticComplexityClassifier.load(where, dim=card["dim"] + 1)


# -- with the real embedders: a sanity list written apart from the hard set -----------------

SANITY = [  # (prompt, expected tier)
    ("Hello! I just got back from my cousin's wedding in the countryside, the food was great and the band "
     "played until two in the morning, so I'm exhausted. Anyway, what is the capital of Belgium?", "small"),
    ("Merhaba, dün akşam komşularla uzun uzun sohbet ettik, çay demledik, çocuklar da bahçede oynadı, "
     "gece yarısı ancak yatabildik. Neyse, Belçika'nın başkenti neresidir?", "small"),
    ("Compare MySQL and PostgreSQL.", "large"),
    ("PostgreSQL ile MySQL'i karşılaştır.", "large"),
    ("Plan a 5-day trip to Lisbon.", "large"),
    ("Lizbon için 5 günlük bir gezi planla.", "large"),
    ("What is the capital of Belgium?", "small"),
    ("Belçika'nın başkenti neresidir?", "small"),
]


def test_the_sanity_list_is_in_no_training_file_and_not_in_the_hard_set():
    seen = {r["prompt"].strip().casefold() for n in TRAINING_FILES + ("complexity_hard.csv",) for r in rows(n)}
    assert not [p for p, _ in SANITY if p.casefold() in seen]


@pytest.fixture(scope="module", params=["all-MiniLM-L6-v2", "multilingual-e5-small"])
def real(request):
    from semroute.embed import make_embedder

    embedder = make_embedder(request.param)
    return embedder, LogisticComplexityClassifier.load(embedder_name=embedder.name, dim=embedder.dim)


@pytest.mark.slow
def test_clearly_worded_hard_cases_route_by_what_they_ask(real):
    embedder, clf = real
    prompts = [p for p, _ in SANITY]
    tiers = ["large" if big else "small" for big in clf.predict(embedder.embed(prompts), prompts)]
    wrong = [p for (p, want), got in zip(SANITY, tiers) if got != want]
    # A length reader gets the first six wrong. The classifiers are about 0.9 accurate on such
    # prompts (bench/router_hard.py), so one miss is allowed; this list was not tuned to pass
    # (MiniLM sends "Plan a 5-day trip to Lisbon." small: P 0.34 at threshold 0.35).
    assert len(wrong) <= 1, wrong
