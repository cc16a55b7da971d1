"""Validation, normalisation and keys: pure functions."""

from __future__ import annotations

import pytest

from semroute.errors import InvalidRequest
from semroute.request import exact_key, normalise, policy_fingerprint, scope_of, validate_namespace, validate_question


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", None, 42, b"bytes", ["a"], "x" * 101, "half \ud800 surrogate"])
def test_bad_questions_raise_invalid_request(bad):
    with pytest.raises(InvalidRequest):
        validate_question(bad, max_chars=100)


def test_good_question_is_returned_unchanged():
    assert validate_question("  Şehir içi hız limiti nedir? ", max_chars=100) == "  Şehir içi hız limiti nedir? "


def test_normalise_folds_case_space_and_trailing_punctuation():
    assert normalise("  What is   the SPEED limit?? ") == normalise("what is the speed limit")
    assert normalise("ŞEHİR İÇİ hız limiti?") == "şehir içi hız limiti"


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x" * 200, None, 3])
def test_bad_namespace(bad):
    with pytest.raises(InvalidRequest):
        validate_namespace(bad)


def test_keys_separate_namespace_policy_and_text():
    p1 = policy_fingerprint(models={"small": "a"}, system=None, embedder="e")
    p2 = policy_fingerprint(models={"small": "a"}, system="be brief", embedder="e")
    p3 = policy_fingerprint(models={"small": "b"}, system=None, embedder="e")
    assert len({p1, p2, p3}) == 3
    k = exact_key(scope_of("ns1", p1), "q")
    assert k == exact_key(scope_of("ns1", p1), "q")
    assert k != exact_key(scope_of("ns2", p1), "q")
    assert k != exact_key(scope_of("ns1", p2), "q")
    assert k != exact_key(scope_of("ns1", p1), "q2")
