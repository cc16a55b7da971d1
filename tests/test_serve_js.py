"""The official ``ollama`` npm client, run by ``node``, streams a chat through ``semroute serve``.

``.ci/run`` installs the client (``npm install`` in tests/js); locally the test skips, saying
so, when ``tests/js/node_modules`` is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway_kit import LARGE, SMALL, Gateway

JS = Path(__file__).parent / "js"


@pytest.mark.skipif(not (JS / "node_modules" / "ollama").is_dir(),
                    reason="the ollama npm package is not installed: run `npm install` in tests/js (.ci/run does)")
def test_ollama_npm_client_streams_a_chat(tmp_path, fake_ollama):
    node = shutil.which("node")
    assert node is not None, "node is needed to run the ollama npm client"
    gw = Gateway([fake_ollama.url], tmp_path / "cache")
    try:
        def run() -> dict:
            done = subprocess.run([node, "chat.mjs", gw.url, "semroute", "How wide is a motorway lane?"], cwd=JS,
                                  capture_output=True, text=True, timeout=60, check=True)
            return json.loads(done.stdout)

        miss, hit = run(), run()
    finally:
        gw.stop()
    assert miss["done"] and miss["parts"] > 2 and "How wide is a motorway lane?" in miss["text"]
    assert hit["done"] and hit["parts"] == 1 and hit["text"] == miss["text"]  # the cached answer, in one part
    assert miss["models"] == ["semroute", SMALL, LARGE]
    assert fake_ollama.stats().count("chat") == 1
