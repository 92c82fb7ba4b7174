"""`p2pbak mount`: browse every snapshot as a read-only folder tree (FUSE), as restic's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import RetryLockOpt, run
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.output import Reporter


async def _mount(session: Session, mountpoint: Path, rep: Reporter) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast (pyfuse3, the data path)
    from p2pbak.mountfs.run import mount

    def mounted(snapshots: int) -> None:
        rep.status(action="mounted", mountpoint=str(mountpoint), snapshots=snapshots)
        rep.say(f"mounted {snapshots} snapshots at {mountpoint} (read-only); "
                "Ctrl-C or `fusermount3 -u` to unmount")

    async with unlocked(session, "shared", "mount") as (repo, master):
        return await mount(repo, master, mountpoint, mounted, rep.warn)


def register(app: typer.Typer) -> None:
    @app.command("mount")
    @with_options(cache=True)
    def mount_cmd(opts: Options,
                  mountpoint: Annotated[Path, typer.Argument(
                      help="An empty folder to mount the snapshots on.", metavar="MOUNTPOINT")],
                  retry_lock: RetryLockOpt = "0") -> None:
        """Mount the snapshots as a read-only file system (FUSE), restic's layout:
        snapshots/TIME/, hosts/HOST/TIME/, tags/TAG/TIME/ and ids/ID/, each with the
        backed-up paths whole and a `latest` link; file data is fetched as it is read.
        Serves until Ctrl-C or SIGTERM, then unmounts."""
        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.commands.sim_deps import require_fuse

        require_fuse()
        # imported here, not at the top: keeps CLI start-up fast (pyfuse3)
        from p2pbak.mountfs.run import check_mountpoint

        target = mountpoint.absolute()
        check_mountpoint(target)
        rep = opts.reporter()
        done = run(_mount(opts.session(retry_lock), target, rep))
        rep.summary(**done)
        rep.say(f"unmounted {target}: {done['files_opened']} files opened, "
                f"{done['bytes_read']} bytes read")
