"""Router.from_config: TOML in, value objects out; typos are errors."""

from __future__ import annotations

import pytest

from semroute import ConfigError, Router

GOOD = """
namespace = "traffic"
[cache]
min_similarity = 0.7
ttl_s = 3600
[router]
fallback = "raise"
[tiers.small]
model = "llama3.2:3b"
hosts = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
limit = 2
[tiers.large]
model = "llama3.1:8b"
host = "http://127.0.0.1:3"
"""


def test_from_config_builds_settings_and_tiers(tmp_path):
    path = tmp_path / "semroute.toml"
    path.write_text(GOOD, encoding="utf-8")
    router = Router.from_config(path, data_dir=tmp_path / "cache")
    assert router.settings.cache.min_similarity == 0.7 and router.settings.cache.ttl_s == 3600
    assert router.settings.fallback == "raise"
    assert router.tiers["small"].hosts == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert router.tiers["small"].limit == 2 and router.tiers["large"].hosts == ("http://127.0.0.1:3",)
    assert router.pipeline.namespace == "traffic"


@pytest.mark.parametrize(
    "text",
    [
        "namspace = 'typo'",
        "[cache]\nmin_similarty = 0.5",
        "[cache]\nmin_similarity = 3.0",
        "[router]\nfallback = 'sometimes'",
        "[tiers.medium]\nmodel = 'x'",
        "[tiers.small]\nhosts = ['http://h']",
        "not toml at all = = =",
    ],
)
def test_bad_config_is_a_config_error(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        Router.from_config(path, data_dir=tmp_path / "cache")


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError):
        Router.from_config(tmp_path / "missing.toml")
    path = tmp_path / "latin1.toml"
    path.write_bytes("namespace = 'ş'".encode("latin-1", errors="replace") + b"\xff")
    with pytest.raises(ConfigError):
        Router.from_config(path)
