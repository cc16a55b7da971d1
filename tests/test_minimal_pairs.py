"""The near-miss generator: a slot swap must change what the question asks."""

from __future__ import annotations

import random

from semroute.training.minimal_pairs import xsid_swaps


def _sentence(value: str) -> dict[str, object]:
    tokens = ["bu", "kitaba", value, "yıldız", "ver"]
    return {"tokens": tokens, "slots": [("rating_value", 2, 3)]}


def test_one_number_written_two_ways_is_no_near_miss():
    # "sıfır" and "0" name one value: swapping them changes nothing a user asks.
    swaps = xsid_swaps([_sentence("sıfır"), _sentence("0")], "tr", random.Random(0))
    assert swaps == []


def test_two_numbers_are_a_near_miss():
    swaps = xsid_swaps([_sentence("sıfır"), _sentence("5")], "tr", random.Random(0))
    assert {(q, c) for q, c, *_ in swaps} == {("bu kitaba 5 yıldız ver", "bu kitaba sıfır yıldız ver"),
                                              ("bu kitaba sıfır yıldız ver", "bu kitaba 5 yıldız ver")}
    assert all(label == 0 for _, _, _, label, _, _ in swaps)
