"""The near-miss generator: a slot swap must change what the question asks."""

from __future__ import annotations

import random

from semroute.training.minimal_pairs import _same_slot_value, xsid_swaps


def _sentence(value: str) -> dict[str, object]:
    # Only "sıfır" makes the text read as Turkish, which stems "Halo" otherwise: the features see
    # a change, so only the generator's own check keeps this pair out (xSID test has such pairs).
    tokens = ["Halo", "Ghosts", "of", "Onyx'e", value, "puan", "ver"]
    return {"tokens": tokens, "slots": [("rating_value", 4, 5)]}


def test_one_number_written_two_ways_is_no_near_miss():
    # "sıfır" and "0" name one value: swapping them changes nothing a user asks.
    swaps = xsid_swaps([_sentence("sıfır"), _sentence("0")], "tr", random.Random(0))
    assert swaps == []


def test_two_numbers_are_a_near_miss():
    swaps = xsid_swaps([_sentence("sıfır"), _sentence("5")], "tr", random.Random(0))
    assert {(q, c) for q, c, *_ in swaps} == {("Halo Ghosts of Onyx'e 5 puan ver", "Halo Ghosts of Onyx'e sıfır puan ver"),
                                              ("Halo Ghosts of Onyx'e sıfır puan ver", "Halo Ghosts of Onyx'e 5 puan ver")}
    assert all(label == 0 for _, _, _, label, _, _ in swaps)


def _slot_sentence(tokens: list[str], value_at: int) -> dict[str, object]:
    return {"tokens": tokens, "slots": [("object_location_type", value_at, value_at + 1)]}


def test_two_words_for_one_thing_are_no_near_miss():
    # xSID's annotators wrote "cinema" and "movie theatre" for one place: swapping them rewords.
    sentences = [_slot_sentence(["find", "a", "cinema", "nearby"], 2),
                 _slot_sentence(["find", "a", "movie theatre", "nearby"], 2)]
    assert xsid_swaps(sentences, "en", random.Random(0)) == []


def test_a_turkish_slot_value_with_a_suffix_is_still_the_same_thing():
    sentences = [_slot_sentence(["en", "yakın", "sinemada", "ne", "var"], 2),
                 _slot_sentence(["en", "yakın", "film", "salonunda", "ne", "var"], 2)]
    sentences[1]["slots"] = [("object_location_type", 2, 4)]
    assert xsid_swaps(sentences, "tr", random.Random(0)) == []


def test_two_different_places_stay_a_near_miss():
    sentences = [_slot_sentence(["book", "a", "tavern", "for", "two"], 2),
                 _slot_sentence(["book", "a", "steakhouse", "for", "two"], 2)]
    swaps = xsid_swaps(sentences, "en", random.Random(0))
    assert {(q, c) for q, c, *_ in swaps} == {("book a steakhouse for two", "book a tavern for two"),
                                              ("book a tavern for two", "book a steakhouse for two")}


def test_a_word_is_not_its_longer_neighbour():
    # "bugün" (today) begins with "bu" (this), but "gün" is no suffix; "hereford" is not "here".
    assert not _same_slot_value("Bu", "Bugün", "tr")
    assert not _same_slot_value("here", "hereford", "en")
    assert _same_slot_value("Mevcut", "Bu", "tr")
