"""The near-miss generator: a slot swap must change what the question asks."""

from __future__ import annotations

import random

from semroute.training.minimal_pairs import xsid_swaps


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
