"""The fragment store and the rate limiter, without HTTP."""

import asyncio
import re
import tempfile
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.net.ratelimit import TokenBucket
from p2pbak.store.fragments import FragmentStore, StoreError, valid_id


def fid_of(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=5000), min_size=1, max_size=4))
def test_put_read_delete_round_trip(blobs: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = FragmentStore(Path(d)).open()
        unique = {fid_of(b): b for b in blobs}
        for b in blobs:
            store.put(fid_of(b), b)
        assert store.stored_bytes == sum(len(b) for b in unique.values())
        for fid, b in unique.items():
            assert store.read(fid) == b
        store.close()
        reopened = FragmentStore(Path(d)).open()  # the count survives a restart
        assert reopened.stored_bytes == sum(len(b) for b in unique.values())
        for fid in unique:
            assert reopened.delete(fid)
            assert not reopened.delete(fid)
            assert reopened.read(fid) is None
        assert reopened.stored_bytes == 0
        reopened.close()


@given(st.text(max_size=80))
def test_only_64_lowercase_hex_is_an_id(text: str) -> None:
    ok = re.fullmatch(r"[0-9a-f]{64}", text) is not None
    assert valid_id(text) is ok
    store = FragmentStore(Path("/nonexistent-root"))
    if ok:
        assert store.path(text).name == text
    else:
        with pytest.raises(ValueError):
            store.path(text)


def test_put_refuses_wrong_bytes(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path).open()
    with pytest.raises(ValueError):
        store.put(fid_of(b"one"), b"two")
    assert [p for p in (tmp_path / "fragments").rglob("*") if p.is_file()] == []


def test_replay_memory_survives_restart_and_forgets_expired(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path).open()
    assert store.use_ticket("t1", exp=1000, now=900)
    assert not store.use_ticket("t1", exp=1000, now=950)
    assert store.use_ticket("t2", exp=2000, now=950)
    store.close()
    store = FragmentStore(tmp_path).open()
    assert not store.use_ticket("t2", exp=2000, now=960)
    # after t1 expired it is forgotten (an expired ticket is refused on its expiry anyway)
    assert store.use_ticket("t1", exp=3000, now=1001)
    store.close()


def test_storage_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(StoreError, match="not a folder"):
        FragmentStore(f).open()


def test_free_bytes_respects_cap_and_reservations(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path).open()
    data = b"x" * 100
    store.put(fid_of(data), data)
    assert store.free_bytes(1000) == 900
    assert store.free_bytes(1000, reserved=850) == 50
    assert store.free_bytes(50) == 0
    assert store.free_bytes(0) == 0  # a cap of zero lends nothing
    assert store.free_bytes(None) == store.disk_free()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@given(st.integers(1, 10**7), st.lists(st.integers(1, 10**6), min_size=1, max_size=50))
def test_token_bucket_never_exceeds_the_rate(rate: int, sizes: list[int]) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)

    async def go() -> None:
        for n in sizes:
            await bucket.take(n)

    asyncio.run(go())
    # everything passed by clock.now; only the burst came for free
    assert bucket.burst == pytest.approx(rate / 10)
    assert sum(sizes) <= rate * clock.now + bucket.burst + 1e-6 * sum(sizes)
    assert bucket.waited == pytest.approx(sum(clock.slept))
    # and it does not hold back more than needed
    assert clock.now <= max(0.0, (sum(sizes) - bucket.burst) / rate) + 1e-6


def test_unlimited_bucket_never_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0, clock=clock, sleep=clock.sleep)
    asyncio.run(bucket.take(10**12))
    assert clock.slept == []


def test_one_store_per_folder(tmp_path: Path) -> None:
    first = FragmentStore(tmp_path).open()
    with pytest.raises(StoreError, match=r"in use: .*pid"):
        FragmentStore(tmp_path).open()
    first.close()
    FragmentStore(tmp_path).open().close()  # free again once closed
