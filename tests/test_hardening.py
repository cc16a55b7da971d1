"""Smaller hardening from issue 12, item 6: the journal after fork(), strategies named in TOML,
and artifacts that would unpack to far more than they weigh."""

from __future__ import annotations

import os
import sys
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from reliability_helpers import HashEmbedder
from semroute.artifacts import MAX_ARTIFACT_BYTES, load_artifact, write_artifact
from semroute.cache import MemoryStore
from semroute.config import load_config
from semroute.errors import ConfigError, ModelError, StoreError
from semroute.types import CacheEntry

pytestmark = pytest.mark.reliability


def entry(i: int, scope: str = "ns|p") -> CacheEntry:
    vector = HashEmbedder().embed([f"q{i}"])[0]
    return CacheEntry(id=f"id{i}", key=f"k{i}", scope=scope, namespace="ns", question=f"q{i}", answer=f"a{i}",
                      vector=vector, created_at=1.0)


# ----------------------------------------------------------------------- fork


def fork(child) -> int:
    """Run ``child()`` in a forked process; its return value is the exit status."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded process": we only run child()
        pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = child()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_cannot_write_through_the_parents_journal(tmp_path) -> None:
    store = MemoryStore(tmp_path)
    store.put_many([entry(1)])

    def child() -> int:
        try:
            store.put_many([entry(2)])
        except StoreError:
            pass
        else:
            return 1  # wrote through the parent's journal
        try:
            MemoryStore(tmp_path)
        except StoreError:
            pass
        else:
            return 2  # a second store on the parent's directory
        store.close()  # must leave the parent's connection and lock alone
        return 0

    assert fork(child) == 0
    store.put_many([entry(3)])  # the parent still writes
    with pytest.raises(StoreError):
        MemoryStore(tmp_path)  # and still holds the lock
    store.close()
    with MemoryStore(tmp_path) as reopened:
        assert sorted(e.id for e in reopened.entries()) == ["id1", "id3"]


# ----------------------------------------------------------------------- strategies in TOML

EVIL = '''
import pathlib
pathlib.Path({marker!r}).write_text("imported")


class Strategy:
    name = "mine"

    def pick(self, states, rng):
        return 0
'''


def config_naming(tmp_path, strategy: str):
    path = tmp_path / "semroute.toml"
    path.write_text(f'[tiers.small]\nmodel = "llama3.2:3b"\nstrategy = "{strategy}"\n', encoding="utf-8")
    return path


def test_a_toml_strategy_path_is_not_imported_without_opt_in(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "imported.txt"
    (tmp_path / "semroute_test_evil_strategy.py").write_text(EVIL.format(marker=str(marker)), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = config_naming(tmp_path, "semroute_test_evil_strategy:Strategy")
    with pytest.raises(ConfigError, match="allow_strategy_import"):
        load_config(path)
    assert not marker.exists() and "semroute_test_evil_strategy" not in sys.modules
    kwargs = load_config(path, allow_strategy_import=True)  # the caller's explicit choice
    assert marker.exists() and kwargs["tiers"]["small"].strategy == "semroute_test_evil_strategy:Strategy"
    sys.modules.pop("semroute_test_evil_strategy", None)


@pytest.mark.parametrize("strategy", ["fastest", "os:nope"])
def test_unknown_strategies_fail_at_load(tmp_path, strategy: str) -> None:
    with pytest.raises(ConfigError):
        load_config(config_naming(tmp_path, strategy), allow_strategy_import=True)


def test_builtin_strategies_load(tmp_path) -> None:
    assert load_config(config_naming(tmp_path, "round_robin"))["tiers"]["small"].strategy == "round_robin"


# ----------------------------------------------------------------------- artifacts


def write_card(directory) -> None:
    (directory / "card.json").write_text('{"embedder": "e", "dim": 4}', encoding="utf-8")


def test_an_npz_bomb_is_refused_from_its_headers(tmp_path) -> None:
    """80 MB of zeros deflate to ~80 kB; loading must refuse it without unpacking it."""
    write_card(tmp_path)
    n = 20 * 2**20  # float32 -> 80 MiB, above MAX_ARTIFACT_BYTES
    assert n * 4 > MAX_ARTIFACT_BYTES
    header = {"descr": "<f4", "fortran_order": False, "shape": (n,)}
    with zipfile.ZipFile(tmp_path / "model.npz", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("w.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            chunk = bytes(2**20)
            for _ in range(n * 4 // len(chunk)):
                member.write(chunk)
    assert (tmp_path / "model.npz").stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ModelError, match="unpack"):
            load_artifact(tmp_path, "test model")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak


def test_an_npz_header_that_promises_more_than_the_member_holds_is_refused(tmp_path) -> None:
    write_card(tmp_path)
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**9,)}
    with zipfile.ZipFile(tmp_path / "model.npz", "w") as archive:
        with archive.open("w.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(bytes(64))
    with pytest.raises(ModelError, match="header"):
        load_artifact(tmp_path, "test model")


def test_object_arrays_and_foreign_members_are_refused(tmp_path) -> None:
    write_card(tmp_path)
    with zipfile.ZipFile(tmp_path / "model.npz", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelError):
        load_artifact(tmp_path, "test model")


def test_a_normal_artifact_still_loads(tmp_path) -> None:
    write_card(tmp_path)
    np.savez_compressed(tmp_path / "model.npz", w=np.arange(4, dtype=np.float32), names=np.array(["a", "bc"]))
    card, arrays = load_artifact(tmp_path, "test model", embedder="e", dim=4)
    assert card["dim"] == 4 and arrays["w"].tolist() == [0, 1, 2, 3] and arrays["names"].tolist() == ["a", "bc"]


def test_a_written_artifact_reads_back(tmp_path) -> None:
    write_artifact(tmp_path / "new", {"w": np.arange(4, dtype=np.float32)}, {"embedder": "e", "dim": 4, "note": "ğ"})
    card, arrays = load_artifact(tmp_path / "new", "test model", embedder="e", dim=4)
    assert card["note"] == "ğ" and arrays["w"].tolist() == [0, 1, 2, 3]


def test_a_failed_write_leaves_the_previous_artifact_whole(tmp_path) -> None:
    write_artifact(tmp_path, {"w": np.zeros(4, dtype=np.float32)}, {"embedder": "e", "dim": 4})
    (tmp_path / "card.json.tmp").mkdir()  # the card cannot be written: the write fails half-way
    with pytest.raises(OSError):
        write_artifact(tmp_path, {"w": np.ones(4, dtype=np.float32)}, {"embedder": "e", "dim": 4})
    _, arrays = load_artifact(tmp_path, "test model", embedder="e", dim=4)
    assert arrays["w"].tolist() == [0, 0, 0, 0]
    assert not (tmp_path / "model.npz.tmp").exists()
