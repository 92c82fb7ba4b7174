"""Data path throughput against raw zfec, on the same bytes, in the same run.

The whole pipeline (walk, chunk, hash, compress, encrypt, pack, erasure-code) backs up
--size MiB (default 256) of random files into a repository that erasure-codes every pack
at the k/n chosen for a = 0.5 and keeps only the fragment count. The bound is raw zfec
encoding the same bytes in 16 MiB packs at the same k/n, on as many threads as there are
cores (zfec releases the GIL), so the pipeline is measured against zfec at full use of the
machine. The two are run interleaved, best of --rounds each.

    python bench/datapath.py [--size MiB] [--bound 0.9] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zfec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2pbak.datapath.archiver import backup
from p2pbak.datapath.erasure import encode_pack, share_length
from p2pbak.datapath.pack import DEFAULT_PACK_SIZE
from p2pbak.market.erasure import choose_code

MiB = 1024 * 1024


class EncodeOnlyRepository:
    """Erasure-codes packs like a real repository, then drops the fragments."""

    def __init__(self, k: int, n: int) -> None:
        self.k, self.n = k, n
        self.fragments = 0
        self.fragment_bytes = 0
        self.blobs: dict[str, dict[str, bytes]] = {"snapshots": {}, "index": {}}

    def _encode(self, pack_id: str, data: bytes) -> None:
        fragments = encode_pack(pack_id, data, self.k, self.n)
        self.fragments += len(fragments)
        self.fragment_bytes += sum(map(len, fragments))

    async def put_pack(self, pack_id: str, data: bytes) -> None:
        await asyncio.to_thread(self._encode, pack_id, data)

    async def get_pack(self, pack_id: str) -> bytes:
        raise KeyError(pack_id)

    async def has_pack(self, pack_id: str) -> bool:
        return False

    async def put_snapshot(self, snapshot_id: str, blob: bytes) -> None:
        self.blobs["snapshots"][snapshot_id] = blob

    async def get_snapshot(self, snapshot_id: str) -> bytes:
        return self.blobs["snapshots"][snapshot_id]

    async def list_snapshots(self) -> list[str]:
        return list(self.blobs["snapshots"])

    async def delete_snapshot(self, snapshot_id: str) -> None:
        self.blobs["snapshots"].pop(snapshot_id, None)

    async def put_index(self, index_id: str, blob: bytes) -> None:
        self.blobs["index"][index_id] = blob

    async def get_index(self, index_id: str) -> bytes:
        return self.blobs["index"][index_id]

    async def list_indexes(self) -> list[str]:
        return list(self.blobs["index"])

    async def delete_index(self, index_id: str) -> None:
        self.blobs["index"].pop(index_id, None)

    async def get_keyfile(self) -> bytes:
        return b""

    async def put_keyfile(self, blob: bytes) -> None:
        pass


def raw_zfec(data: memoryview, k: int, n: int, threads: int) -> tuple[float, float]:
    """(wall, CPU) seconds for zfec alone to encode `data` in pack-sized pieces."""
    encoder = zfec.Encoder(k, n)

    def encode(start: int) -> None:
        piece = data[start:start + DEFAULT_PACK_SIZE]
        size = share_length(len(piece), k)
        blocks = tuple(bytes(piece[i * size:(i + 1) * size]).ljust(size, b"\0")
                       for i in range(k))
        encoder.encode(blocks)

    starts = range(0, len(data), DEFAULT_PACK_SIZE)
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(encode, starts))
    return time.perf_counter() - wall, time.process_time() - cpu


def pipeline(src: Path, k: int, n: int, uploads: int) -> tuple[float, float, str]:
    """(wall, CPU) seconds for a backup of `src`, and what it produced."""
    repo = EncodeOnlyRepository(k, n)
    wall, cpu = time.perf_counter(), time.process_time()
    result = asyncio.run(backup(repo, bytes(32), [src], uploads=uploads))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    what = (f"{result.summary.packs_added} packs, {repo.fragments} fragments, "
            f"{repo.fragment_bytes / MiB:.0f} MiB out")
    return wall, cpu, what


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="MiB of random data")
    parser.add_argument("--bound", type=float, default=0.9, help="ratio to reach")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    code = choose_code([0.5] * 256)
    k, n = code.k, code.n
    base = Path(tempfile.mkdtemp(prefix="p2pbak-bench-", dir="/dev/shm"
                                 if os.path.isdir("/dev/shm") else None))
    try:
        data = os.urandom(args.size * MiB)
        src = base / "src"
        src.mkdir()
        per_file = 32 * MiB
        for i in range(0, len(data), per_file):
            (src / f"file{i // per_file:03d}").write_bytes(data[i:i + per_file])
        view = memoryview(data)
        one = raw_zfec(view, k, n, 1)[0]
        full = pipe = (float("inf"), float("inf"))
        for _ in range(args.rounds):  # interleaved, best of each: fair on a busy machine
            full = min(full, raw_zfec(view, k, n, cores))
            wall, cpu, what = pipeline(src, k, n, cores)
            pipe = min(pipe, (wall, cpu))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    mb = args.size
    ratio = full[0] / pipe[0]
    print(f"data: {mb} MiB random, code k={k} n={n} (factor {code.factor:.2f}), {cores} cores")
    print(f"raw zfec, 1 thread:        {mb / one:8.1f} MiB/s")
    print(f"raw zfec, {cores} threads:       {mb / full[0]:8.1f} MiB/s  (the bound)")
    print(f"pipeline, chunk+compress+encrypt+pack+encode: {mb / pipe[0]:8.1f} MiB/s  ({what})")
    print(f"CPU seconds: raw zfec {full[1]:.2f}, pipeline {pipe[1]:.2f} "
          f"(ratio {full[1] / pipe[1]:.3f}: the pipeline's work beyond zfec)")
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {cores} cores"
          + ("" if load <= cores else ": busy machine, the wall clock ratio is noisy; "
             "the CPU ratio is the steadier figure"))
    verdict = "ok" if ratio >= args.bound else "BELOW"
    print(f"ratio pipeline / raw zfec ({cores} threads), wall clock: {ratio:.3f}  "
          f"bound {args.bound}  {verdict}")

if __name__ == "__main__":
    main()
