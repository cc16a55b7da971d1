"""The exact tier merges only texts that mean the same (item 3), and malformed requests are
refused where they enter and never count against an instance (item 4 of issue 12)."""

from __future__ import annotations

import asyncio

import pytest

from semroute.backends.ollama import OllamaBackend
from semroute.backends.pool import Pool
from semroute.errors import BackendProtocolError, InvalidRequest
from semroute.request import NORMALISATION_VERSION, exact_key, normalise, validate_namespace
from semroute.testing import FakeFleet
from semroute.types import Message

pytestmark = pytest.mark.reliability

MODEL = "llama3.2:3b"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is 5!", "What is 5?"),  # factorial
        ("What is 5!", "What is 5"),
        ("2³", "23"),
        ("x²", "x2"),
        ("H₂O", "H2O"),
        ("½", "1/2"),
        ("Maße", "Masse"),
        ("KIR nedir", "kir nedir"),  # Turkish: "KIR" is "kır" (countryside), not "kir" (dirt)
        ("KIRMIZI", "kirmizi"),
        ("Islak yolda hız sınırı", "islak yolda hız sınırı"),  # "Islak" is "ıslak" (wet)
        ("Ilık su", "ilık su"),
        ("ﬁle", "file"),
    ],
)
def test_texts_that_mean_different_things_keep_different_keys(a: str, b: str) -> None:
    assert normalise(a) != normalise(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("  What is   the SPEED limit?? ", "what is the speed limit"),
        ("What is 5?", "what is 5"),
        ("What is 5.", "What is 5"),
        ("caf\u00e9", "cafe\u0301"),  # precomposed and combining accent: NFC
        ("ŞEHİR İÇİ hız limiti?", "şehir içi hız limiti"),
        ("Tab\tand\u00a0nbsp", "tab and nbsp"),
        ("MASSE", "masse"),
        ("When must I use winter tyres?", "when must i use winter tyres"),
        ("World War I", "world war i"),
        ("Is it legal to park here?", "is it legal to park here"),  # English words that start questions
        ("Isn't parking free on Sundays?", "isn't parking free on sundays"),
        ("It’s icy: can I drive?", "it’s icy: can i drive"),
        ("In which lane may trucks drive?", "in which lane may trucks drive"),
        ("If I am caught speeding, what happens?", "if i am caught speeding, what happens"),
        ("Inside a tunnel, may I overtake?", "inside a tunnel, may i overtake"),
        ("東京はどこ？", "東京はどこ"),
    ],
)
def test_texts_that_mean_the_same_share_a_key(a: str, b: str) -> None:
    assert normalise(a) == normalise(b)


def test_the_normalisation_version_is_part_of_the_key() -> None:
    assert NORMALISATION_VERSION >= 2
    assert exact_key("ns|p", "q") != exact_key("ns|p", "q\x00")


@pytest.mark.parametrize("bad", ["tenant-a\n", "tenant\n", "a\nb", " a", "a "])
def test_namespace_with_a_trailing_newline_is_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_namespace(bad)


# ----------------------------------------------------------------------- malformed requests

BAD_MESSAGES = [
    [Message("user", "half \ud800 surrogate")],
    [Message("user", None)],  # type: ignore[arg-type]
    [Message("wizard", "hi")],  # type: ignore[arg-type]
    [Message("user", b"bytes")],  # type: ignore[arg-type]
    [Message(None, "hi")],  # type: ignore[arg-type]
    [{"role": "user", "content": "hi"}],
]


@pytest.fixture(scope="module")
def fleet():
    with FakeFleet(3, models=(MODEL,)) as fleet:
        yield fleet


def assert_untouched(fleet: FakeFleet, pool: Pool) -> None:
    assert fleet.count("chat") == 0
    assert all(s.breaker == "closed" and s.recent_failures == 0 for s in pool.states(MODEL))


@pytest.mark.parametrize("messages", BAD_MESSAGES, ids=range(len(BAD_MESSAGES)))
def test_malformed_messages_are_refused_before_any_instance_sees_them(fleet, messages) -> None:
    for fake in fleet:
        fake.reset_stats()
    with Pool([OllamaBackend(u) for u in fleet.urls]) as pool:
        for _ in range(3):  # three of them would once open three healthy breakers
            with pytest.raises(InvalidRequest):
                pool.chat(MODEL, messages)
            with pytest.raises(InvalidRequest):
                pool.stream(MODEL, messages)
            with pytest.raises(InvalidRequest):
                asyncio.run(pool.achat(MODEL, messages))
        for backend in (OllamaBackend(fleet.urls[0]),):
            with pytest.raises(InvalidRequest):
                backend.chat(MODEL, messages)
        assert_untouched(fleet, pool)


@pytest.mark.parametrize("options", [{"temperature": float("nan")}, {"stop": ["\udc80"]}, {1: 2}, {"x": object()}, "x"])
def test_malformed_options_are_refused(fleet, options) -> None:
    for fake in fleet:
        fake.reset_stats()
    with Pool([OllamaBackend(u) for u in fleet.urls]) as pool:
        with pytest.raises(InvalidRequest):
            pool.chat(MODEL, [Message("user", "hi")], options=options)
        assert_untouched(fleet, pool)


def test_a_400_for_bad_input_never_counts_against_the_instance(fleet) -> None:
    with Pool([OllamaBackend(fleet.urls[0])]) as pool:
        fleet[0].set_fault("error", status=400, count=5)
        try:
            for _ in range(5):
                with pytest.raises(BackendProtocolError) as err:
                    pool.chat(MODEL, [Message("user", "hi")])
                assert err.value.status == 400
        finally:
            fleet[0].clear_fault()
        state = pool.states(MODEL)[0]
        assert state.breaker == "closed" and state.recent_failures == 0
        assert pool.chat(MODEL, [Message("user", "hi")]).text
