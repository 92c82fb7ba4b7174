"""The local metadata cache (store.cache): blobs as the coordinator holds them, checked by
id on read; a second run fetches only what is new; --no-cache and `p2pbak cache`."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.client.session import EarlyUnwrap
from p2pbak.datapath.crypto import new_master_key, wrap_master_key
from p2pbak.errors import WrongPassphrase
from p2pbak.localgrid.grid import Grid
from p2pbak.store.cache import (
    MetadataCache,
    cached_keyfile,
    cleanup,
    list_caches,
    repository_id,
)
from tests.support.grid import GridSpec, lines, random_files, summary

GRID = GridSpec(4)


def _id(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@settings(max_examples=30, deadline=None)
@given(blobs=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=6,
                      unique=True), flip=st.integers(0, 5))
def test_reads_check_every_blob_against_its_id(tmp_path_factory: pytest.TempPathFactory,
                                               blobs: list[bytes], flip: int) -> None:
    base = tmp_path_factory.mktemp("cache")
    cache = MetadataCache.open(base, "r" * 32, {"coordinator": "c", "user": "u"})
    for b in blobs:
        cache.put("index", _id(b), b)
    cache.put("snapshot", _id(b"x"), b"not x")  # a blob under a wrong id is not kept
    assert cache.get("snapshot", _id(b"x")) is None
    victim = blobs[flip % len(blobs)]
    path = cache.root / "index" / _id(victim)
    path.write_bytes(bytes([victim[0] ^ 1]) + victim[1:])  # damaged on disk
    for b in blobs:
        assert cache.get("index", _id(b)) == (None if b is victim else b)
    assert not path.exists()  # the damaged file is dropped, to be fetched again
    cache.retain("index", [])
    assert list((cache.root / "index").iterdir()) == []


def test_repository_ids_differ_and_cleanup_takes_only_old_caches(tmp_path: Path) -> None:
    a = repository_id("http://c", "alice", b"key1")
    assert len({a, repository_id("http://c", "alice", b"key2"),
                repository_id("http://c", "bob", b"key1"),
                repository_id("http://d", "alice", b"key1")}) == 4
    old = MetadataCache.open(tmp_path, a, {"coordinator": "http://c", "user": "alice"})
    new = MetadataCache.open(tmp_path, "b" * 32, {"coordinator": "http://c", "user": "bob"})
    stamp = time.time() - 31 * 86400
    os.utime(old.root / "last-used", (stamp, stamp))
    assert [c.id for c in list_caches(tmp_path)] == ["b" * 32, a]
    assert [c.user for c in cleanup(tmp_path, 30)] == ["alice"]
    assert not old.root.exists() and new.root.exists()


def test_cached_keyfile_is_the_one_its_folder_is_named_after(tmp_path: Path) -> None:
    assert cached_keyfile(tmp_path / "none", "http://c", "alice") is None
    old, new = b"old key file", b"new key file"
    for keyfile in (old, new):  # `key passwd`: a new key file, a new cache folder
        cache = MetadataCache.open(tmp_path, repository_id("http://c", "alice", keyfile),
                                   {"coordinator": "http://c", "user": "alice"})
        cache.put_keyfile(keyfile)
    assert cached_keyfile(tmp_path, "http://c", "alice") == new  # the last used
    assert cached_keyfile(tmp_path, "http://c", "bob") is None
    assert cached_keyfile(tmp_path, "http://d", "alice") is None
    (cache.root / "keyfile").write_bytes(b"another key file")  # not the folder's own
    assert cached_keyfile(tmp_path, "http://c", "alice") == old


def test_early_unwrap_opens_only_with_the_passphrase() -> None:
    master = new_master_key()
    keyfile = wrap_master_key(master, "right")
    assert EarlyUnwrap(keyfile, "right").key() == master
    with pytest.raises(WrongPassphrase):
        EarlyUnwrap(keyfile, "wrong").key()


def test_second_run_fetches_only_new_blobs(grid: Grid, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"P2PBAK_CACHE_DIR": str(cache)}
    alice = grid.add_user("alice")
    src = random_files(tmp_path / "src", 3, 8, seed=1)
    summary(grid.cli("backup", str(src), "--json", config=alice, env=env))
    (caches,) = list_caches(cache)
    assert caches.user == "alice" and caches.blobs == 2  # its index and its snapshot
    assert cached_keyfile(cache, grid.url, "alice") == (Path(caches.path) / "keyfile"
                                                         ).read_bytes()
    stored = {p.name: p.read_bytes() for p in Path(caches.path).rglob("*")
              if p.parent.name in ("index", "snapshot")}
    with sqlite3.connect(grid.db) as db:  # exactly as the coordinator holds them
        rows = dict(db.execute("SELECT id, blob FROM blobs").fetchall())
    assert {k: rows.get(k) for k in stored} == stored
    (src / "new.bin").write_bytes(os.urandom(5000))
    summary(grid.cli("backup", str(src), "--json", config=alice, env=env))
    assert list_caches(cache)[0].blobs == 4
    first = summary(grid.cli("restore", "latest", "--target", str(tmp_path / "a"),
                             "--json", config=alice, env=env))
    assert first["metadata_fetched"] == 0 and first["metadata_cached"] >= 4
    again = summary(grid.cli("restore", "latest", "--target", str(tmp_path / "b"),
                             "--json", "--no-cache", config=alice, env=env))
    assert (again["metadata_fetched"], again["metadata_cached"]) == (
        first["metadata_cached"], 0)
    assert (tmp_path / "b" / "src" / "new.bin").read_bytes() == (src / "new.bin").read_bytes()
    assert not any(b"alice" in p.read_bytes() for p in Path(caches.path).rglob("*")
                   if p.parent.name in ("index", "snapshot"))  # sealed: no plaintext


def test_no_cache_and_cache_command(grid: Grid, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"P2PBAK_CACHE_DIR": str(cache)}
    bob = grid.add_user("bob")
    src = random_files(tmp_path / "src", 2, 4, seed=2)
    summary(grid.cli("backup", str(src), "--json", "--no-cache", config=bob, env=env))
    assert list_caches(cache) == []
    assert grid.cli("snapshots", "--json", config=bob, env=env).returncode == 0
    listed = lines(grid.cli("cache", "--json", env=env).stdout)
    assert [m["user"] for m in listed if m["message_type"] == "cache"] == ["bob"]
    assert summary(grid.cli("cache", "--cleanup", "--json", env=env))["caches"] == 0
    root = Path(list_caches(cache)[0].path)
    stamp = time.time() - 40 * 86400
    os.utime(root / "last-used", (stamp, stamp))
    done = summary(grid.cli("cache", "--cleanup", "--json", env=env))
    assert done["caches"] == 1 and not root.exists()
    bad = grid.cli("cache", "--max-unused", "-1", env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert json.loads(grid.cli("cache", "--json", env=env).stdout.splitlines()[-1])[
        "caches"] == 0
