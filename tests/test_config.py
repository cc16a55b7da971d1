"""Router.from_config: TOML in, value objects out; typos are errors."""

from __future__ import annotations

import pytest

from semroute import BreakerSettings, ConfigError, PoolSettings, QueueSettings, RetrySettings, Router, Timeout

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


POOLED = """
[tiers.small]
model = "llama3.2:3b"
hosts = ["http://127.0.0.1:1"]
[tiers.small.timeout]
connect = 0.5
read = 7
[tiers.small.pool]
health_interval_s = 2.5
[tiers.small.pool.retry]
attempts = 1
[tiers.small.pool.queue]
max_length = 0
timeout_s = 0.25
[tiers.small.pool.breaker]
failure_threshold = 9
"""


def test_a_tier_carries_its_pool_settings_into_its_pool(tmp_path):
    path = tmp_path / "pooled.toml"
    path.write_text(POOLED, encoding="utf-8")
    router = Router.from_config(path, data_dir=tmp_path / "cache")
    tier = router.tiers["small"]
    assert tier.timeout == Timeout(connect=0.5, read=7)
    assert tier.pool == PoolSettings(
        retry=RetrySettings(attempts=1),
        queue=QueueSettings(max_length=0, timeout_s=0.25),
        breaker=BreakerSettings(failure_threshold=9),
        health_interval_s=2.5,
    )
    pool = router.pipeline.pool("small")  # built from the tier: no defaults sneak in
    assert pool.settings == tier.pool
    assert [b.timeout for b in pool._core.backends] == [tier.timeout]
    router.close()


@pytest.mark.parametrize(
    "table",
    [
        "[tiers.small.timeout]\nread = -1",
        "[tiers.small.timeout]\nreed = 1",
        "[tiers.small.pool]\nretries = 2",
        "[tiers.small.pool.queue]\nmax_length = -1",
        "[tiers.small.pool.breaker]\ncooldown_s = 0",
        "[tiers.small]\nweight = 2",
        "[tiers.small]\npool = 3",
    ],
)
def test_bad_tier_pool_settings_are_config_errors(tmp_path, table):
    path = tmp_path / "bad.toml"
    text = "[tiers.small]\nmodel = 'llama3.2:3b'\n" + table.replace("[tiers.small]\n", "")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        Router.from_config(path, data_dir=tmp_path / "cache")
