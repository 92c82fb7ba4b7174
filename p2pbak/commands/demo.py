"""`p2pbak demo`: a coordinator and N peers on loopback, a real backup, restore and check."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from p2pbak.commands.options import Options, with_options
from p2pbak.config import format_size
from p2pbak.errors import ExitCode


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @with_options(quiet=False, config=False, password=False)
    def demo_cmd(opts: Options, peers: Annotated[int, typer.Option(
                     "--peers", min=3, max=64, help="How many peer agents to start.")] = 10,
                 path: Annotated[Path | None, typer.Option(
                     "--path", file_okay=False, help="Folder to back up (default: a sample "
                     "tree of a few MiB).")] = None,
                 keep: Annotated[bool, typer.Option(
                     "--keep", help="Leave the grid running and say how to use and stop it.")]
                 = False) -> None:
        """Start a local grid, back up a folder, restore it elsewhere, verify every byte."""
        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.localgrid.demo import keep_instructions, run_demo

        rep = opts.reporter()
        r = run_demo(peers, path, keep, say=rep.say)
        rep.summary(**asdict(r))
        counts = sorted(r.fragments_per_peer.values())
        rep.say(f"backed up {r.files} files, {format_size(r.bytes)} "
                f"({format_size(r.data_added)} new, {r.packs_added} packs, "
                f"{format_size(r.bytes_uploaded)} of fragments sent) in {r.backup_seconds:.1f} s")
        rep.say(f"erasure code k={r.k} of n={r.n}: any {r.k} of a pack's {r.n} fragments "
                f"restore it; fragments per peer {counts[0]}..{counts[-1]}" if counts else "")
        rep.say(f"restored in {r.restore_seconds:.1f} s")
        if r.verified:
            rep.say("[green]verified[/]: restored tree is byte-identical (content, modes, "
                    "mtimes, links)")
        else:
            for d in r.differences[:20]:
                rep.warn(f"restore differs: {d}")
        if keep and not opts.json:
            for line in keep_instructions(r):  # whole lines, so they can be pasted
                rep.out.print(line, soft_wrap=True, markup=False, highlight=False)
        if not r.verified:
            raise typer.Exit(int(ExitCode.FAILED))
