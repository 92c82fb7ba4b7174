"""The mounted tree without FUSE: the inodes over a local repository's snapshot, looked up
by the paths the user backed up, and file reads at any offset and size byte-exact."""

from __future__ import annotations

import asyncio
import os
import random
import stat
from pathlib import Path

from p2pbak.datapath.archiver import backup
from p2pbak.datapath.browse import open_reader
from p2pbak.datapath.localrepo import LocalRepository
from p2pbak.datapath.snapshots import list_snapshots
from p2pbak.mountfs.inodes import ROOT, Inodes
from p2pbak.mountfs.layout import layout

MASTER = bytes(range(32))
BIG = os.urandom(2_600_000)  # several chunks (512 KiB .. 8 MiB each)


async def _walk(inodes: Inodes, *parts: str) -> int:
    ino = ROOT
    for part in parts:
        ino = await inodes.lookup(ino, part.encode())
    return ino


def _mounted(tmp: Path) -> tuple[Inodes, Path, Path, str]:
    one, two = tmp / "a" / "doc", tmp / "b" / "doc"  # one base name twice
    (one / "sub").mkdir(parents=True)
    two.mkdir(parents=True)
    (one / "big.bin").write_bytes(BIG)
    (one / "sub" / "x.txt").write_text("x\n")
    (one / "link").symlink_to("sub/x.txt")
    (two / "y.txt").write_text("y\n")
    repo = LocalRepository.create(tmp / "repo")

    async def build() -> tuple[Inodes, str]:
        await backup(repo, MASTER, [one, two], host="h")
        records = await list_snapshots(repo, MASTER)
        return Inodes(await open_reader(repo, MASTER), layout(records), 0), records[0].short_id

    inodes, short = asyncio.run(build())
    return inodes, one, two, short


def test_backed_up_paths_whole_below_each_snapshot(tmp_path: Path) -> None:
    inodes, one, two, short = _mounted(tmp_path)

    async def check() -> None:
        latest = await _walk(inodes, "snapshots", "latest")
        assert stat.S_ISLNK(inodes.entries[latest].mode)
        target = inodes.entries[latest].target.decode()
        for top in (("snapshots", target), ("ids", short), ("hosts", "h", target)):
            base = [*top, *one.parts[1:]]
            assert set(await inodes.children(await _walk(inodes, *base))) == {
                b"big.bin", b"sub", b"link"}
            y = await _walk(inodes, *top, *two.parts[1:], "y.txt")  # the second "doc"
            assert await inodes.read(y, 0, 100) == b"y\n"
        link = await _walk(inodes, "ids", short, *one.parts[1:], "link")
        assert inodes.entries[link].target == b"sub/x.txt"
        snap = await _walk(inodes, "ids", short)
        assert await inodes.lookup(snap, b"..") == await _walk(inodes, "ids")
        assert await inodes.lookup(snap, b".") == snap

    asyncio.run(check())


def test_reads_at_any_offset_are_byte_exact(tmp_path: Path) -> None:
    inodes, one, _, short = _mounted(tmp_path)
    rng = random.Random(19)
    cases = [(0, len(BIG)), (len(BIG) - 1, 10), (len(BIG), 1), (len(BIG) + 5, 100)]
    cases += [(rng.randrange(len(BIG)), rng.randrange(1, 1_500_000)) for _ in range(60)]

    async def check() -> None:
        ino = await _walk(inodes, "ids", short, *one.parts[1:], "big.bin")
        inodes.open(ino)
        starts = inodes.entries[ino].starts
        assert len(starts) > 1  # the file spans several chunks: reads cross their ends
        cases.extend((at - 3, 7) for at in starts[1:])
        for offset, size in cases:
            assert await inodes.read(ino, offset, size) == BIG[offset:offset + size], (
                offset, size)

    asyncio.run(check())
