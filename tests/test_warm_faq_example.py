"""``examples/warm_faq.py`` as cron runs it: a subprocess, a TOML file, FakeOllama for embeddings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "warm_faq.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=180)


def test_warm_faq_reports_and_a_bad_row_changes_nothing(tmp_path, fake_ollama):
    toml = tmp_path / "semroute.toml"
    toml.write_text(f'data_dir = "{tmp_path / "data"}"\n[embedder]\nollama = "llama3.2:3b"\nhost = "{fake_ollama.url}"\n',
                    encoding="utf-8")
    faq = tmp_path / "faq.jsonl"
    faq.write_text('{"question": "Do you ship abroad?", "answer": "To the EU only."}\n\n'
                   '{"question": "Can I return shoes?", "answer": "Within 30 days."}\n', encoding="utf-8")
    done = run(str(faq), "--config", str(toml), "--ttl-s", "inf")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rows"] == report["stored"] == report["entries"] == 2 and report["seconds"] > 0
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nIs it open?,Yes.\nAnd today?,\n", encoding="utf-8")
    failed = run(str(bad), "--config", str(toml))
    assert failed.returncode == 1 and "bad.csv: row 3 has an empty answer" in failed.stderr
    again = run(str(faq), "--config", str(toml))  # the same FAQ again: same entries, nothing added by bad.csv
    report = json.loads(again.stdout)
    assert report["entries"] == 2 and (report["already_stored"], report["added"]) == (2, 0)
