"""`p2pbak cache`: list the local metadata caches (one per repository), or clean them up.

Exit codes: 0 done; 1 the cache folder could not be read or cleaned.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from p2pbak.commands.common import as_dict
from p2pbak.commands.options import Options, with_options
from p2pbak.config import format_size
from p2pbak.errors import P2pbakError

MAX_UNUSED_DAYS = 30


def register(app: typer.Typer) -> None:
    @app.command("cache")
    @with_options(config=False, password=False)
    def cache_cmd(opts: Options, cleanup: Annotated[bool, typer.Option(
                      "--cleanup", help=f"Remove the caches of repositories not used for "
                      f"--max-unused days (default {MAX_UNUSED_DAYS}).")] = False,
                  max_unused: Annotated[int, typer.Option(
                      "--max-unused", min=0, help="Days without use before --cleanup "
                      "removes a cache.")] = MAX_UNUSED_DAYS) -> None:
        """List the local caches of index and snapshot blobs ($P2PBAK_CACHE_DIR, else the
        platform cache folder), or remove those of repositories not used for 30 days."""
        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.store.cache import cleanup as remove_old
        from p2pbak.store.cache import default_base, list_caches

        rep = opts.reporter()
        base = default_base()
        try:
            caches = remove_old(base, max_unused) if cleanup else list_caches(base)
        except OSError as exc:
            raise P2pbakError(f"cannot read the cache folder {base}: {exc.strerror or exc}; "
                              "check its permissions or set $P2PBAK_CACHE_DIR") from None
        for c in caches:
            rep.emit("cache", removed=cleanup, **as_dict(c))
            used = datetime.fromtimestamp(c.last_used, UTC).strftime("%Y-%m-%d %H:%M")
            rep.say(f"{'removed ' if cleanup else ''}{c.id[:12]}  {c.user}@{c.coordinator}  "
                    f"last used {used}  {c.blobs} blobs, {format_size(c.size)}")
        total = sum(c.size for c in caches)
        rep.summary(base=str(base), caches=len(caches), bytes=total, removed=cleanup)
        rep.say(f"{'removed ' if cleanup else ''}{len(caches)} caches in {base}, "
                f"{format_size(total)}")
