"""`--redis-url` on the CLI and in config, `semroute invalidate`, and tags on the embedded store."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from semroute import Router, Tier
from semroute.cache import MemoryStore
from semroute.cli import main
from semroute.config import load_config
from semroute.errors import ConfigError, InvalidRequest
from semroute.types import CacheEntry

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"


def entry(i: int, ns: str, tags=()) -> CacheEntry:
    vector = np.random.default_rng(i).standard_normal(8).astype(np.float32)
    return CacheEntry(id=f"id{i}", key=f"{ns}/k{i}", scope=f"{ns}/s", namespace=ns, question=f"q{i}",
                      answer=f"a{i}", vector=vector, created_at=0.0, tags=tuple(tags))


def test_warm_with_redis_url_fills_a_running_apps_cache(redis_url, embedder, fake_ollama, tmp_path):
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nWhat is the speed limit in a city?,50 km/h unless signs say otherwise.\n"
                   "Can I park on a cycle lane?,No.\n", encoding="utf-8")
    from semroute.embed import default_embedder

    tiers = {"small": Tier(SMALL, (fake_ollama.url,)), "large": Tier(LARGE, (fake_ollama.url,))}
    cli_default = default_embedder()  # what `semroute warm` will use (not loaded until it embeds)
    app_embedder = embedder if cli_default.name == embedder.name else cli_default
    with Router(tiers=tiers, embedder=app_embedder, redis_url=redis_url) as app:
        app.pipeline.prepare()
        app.pipeline.cache.sync()  # the app is running and has loaded its (empty) index
        result = CliRunner().invoke(main, ["warm", str(faq), "--tag", "topic=speed-limits",
                                           "--ollama-url", fake_ollama.url], env={"SEMROUTE_REDIS_URL": redis_url})
        assert result.exit_code == 0, result.output
        assert "stored 2 entries" in result.output
        hit = app.ask("What is the speed limit in a city")
        assert hit.cached and hit.text.startswith("50 km/h") and fake_ollama.stats().count("chat") == 0
        # The app's reads may be up to sync_interval_s behind other processes' writes (they are
        # answered from its feed-following local view); with 0 its next read catches up first.
        app.pipeline.store.sync_interval_s = 0
        result = CliRunner().invoke(main, ["invalidate", "--where", "topic=speed-limits", "--redis-url", redis_url])
        assert result.exit_code == 0 and "invalidated 2 entries" in result.output
        after = app.ask("What is the speed limit in a city")
        assert not after.cached and fake_ollama.stats().count("chat") == 1


def test_invalidate_an_embedded_cache_by_namespace_tag_and_id(tmp_path):
    with MemoryStore(tmp_path) as store:
        store.put_many([entry(1, "a", [("topic", "x")]), entry(2, "a"), entry(3, "b", [("topic", "x")]), entry(4, "b")])
    with MemoryStore(tmp_path) as store:  # tags survive a restart
        assert store.get("id1", now=0.0).tags == (("topic", "x"),)
    runner = CliRunner()
    result = runner.invoke(main, ["invalidate", "--data-dir", str(tmp_path), "--namespace", "b", "--where", "topic=x"])
    assert result.exit_code == 0 and "invalidated 1 entries" in result.output
    result = runner.invoke(main, ["invalidate", "--data-dir", str(tmp_path), "--id", "id2", "--namespace", "a"])
    assert result.exit_code == 0 and "invalidated 2 entries" in result.output
    with MemoryStore(tmp_path) as store:
        assert [e.id for e in store.entries()] == ["id4"]
    result = runner.invoke(main, ["invalidate", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "InvalidRequest" in result.output
    result = runner.invoke(main, ["invalidate", "--data-dir", str(tmp_path), "--where", "topic"])
    assert result.exit_code == 2 and "key=value" in result.output


def test_bad_tags_change_nothing(tmp_path):
    with MemoryStore(tmp_path) as store:
        with pytest.raises(InvalidRequest):
            store.put_many([entry(1, "a"), entry(2, "a", [("bad name", "x")])])
        with pytest.raises(InvalidRequest):
            store.invalidate()
        assert len(store) == 0


def test_config_redis_table(tmp_path):
    path = tmp_path / "semroute.toml"
    path.write_text('[redis]\nurl = "redis://:pw@cache:6379/2"\n', encoding="utf-8")
    assert load_config(path)["redis_url"] == "redis://:pw@cache:6379/2"
    path.write_text('[redis]\nurl = "redis://cache"\nport = 1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="port"):
        load_config(path)
