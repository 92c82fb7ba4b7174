"""`p2pbak stats`: restore size, stored size, deduplication and what erasure coding adds."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    run,
)
from p2pbak.commands.filters import HostFilterOpt, PathFilterOpt, TagFilterOpt, abs_paths
from p2pbak.commands.options import Options, with_options
from p2pbak.config import format_size as size


async def _stats(session: Session, refs: list[str], hosts: list[str], paths: list[str],
                 tags: list[str]) -> Any:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.selection import select
    from p2pbak.datapath.snapshots import find_snapshot, list_snapshots
    from p2pbak.datapath.stats import stats

    async with unlocked(session) as (repo, master):
        if refs:
            records = [await find_snapshot(repo, master, r) for r in refs]
        else:
            records = await list_snapshots(repo, master)
        return await stats(repo, master, select(records, hosts, paths, tags))


def _lines(s: Any) -> list[str]:
    return [f"snapshots: {s.snapshots}",
            f"restore size: {size(s.restore_bytes)} in {s.files} files",
            f"raw data: {size(s.raw_bytes)} in {s.blobs} chunks and trees "
            f"(deduplication ratio {s.dedup_ratio:.2f}x)",
            f"stored: {size(s.stored_bytes)} in {s.packs} packs (sealed blobs "
            f"{size(s.sealed_bytes)})",
            f"on suppliers: {size(s.fragment_bytes)} in {s.fragments} fragments "
            f"(erasure code adds {max(0.0, s.erasure_expansion - 1):.0%}: "
            f"{s.erasure_expansion:.2f}x)",
            f"repository: {size(s.repository_bytes)} in {s.repository_packs} packs "
            "(as `status` counts it)"]


def register(app: typer.Typer) -> None:
    @app.command("stats")
    @with_options()
    def stats_cmd(opts: Options, snapshots: Annotated[list[str] | None, typer.Argument(
                      help="Snapshot ids, prefixes or `latest` (default: all).",
                      metavar="[SNAPSHOT]...")] = None,
                  host: HostFilterOpt = None, path: PathFilterOpt = None,
                  tag: TagFilterOpt = None) -> None:
        """Show the restore size, stored size, deduplication ratio and erasure overhead of
        some snapshots or all."""

        rep = opts.reporter()
        s = run(_stats(opts.session(),
                       list(snapshots or []), list(host or []), abs_paths(path),
                       list(tag or [])))
        rep.summary(**asdict(s), dedup_ratio=s.dedup_ratio,
                    erasure_expansion=s.erasure_expansion)
        for line in _lines(s):
            rep.say(line)
