"""`p2pbak market explain`: the paper's worked figures, computed by this code (§2.2, §2.5)."""

from __future__ import annotations

import typer

from p2pbak.commands import groups
from p2pbak.commands.options import Options, with_options

AVAILABILITY = 0.5  # §2.2: online 12 h a day
TARGET = 0.99999  # §2.2: 99.999% file availability
SPACE_GB = 30.0  # §2.5's example supplier
EXAMPLE_UPLOAD = 5_000  # §3.1: 5 KB/s of upload, space raised from 50 GB to 100 GB
GB = 1_000_000_000


@with_options(config=False, password=False)
def explain(opts: Options) -> None:
    """Print the paper's figures from the code: copies vs erasure factor, effective space,
    and what a GB consumed costs against what a GB supplied earns."""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.market.erasure import choose_code, replication_copies
    from p2pbak.market.prices import Overheads, consume_to_earn_ratio, effective_space
    from p2pbak.market.resources import prices
    from p2pbak.market.settings import paper_example, prior_snapshot

    copies = replication_copies(AVAILABILITY, TARGET)
    code = choose_code([AVAILABILITY] * 256, target=TARGET)
    space = effective_space(SPACE_GB, AVAILABILITY)
    overheads = Overheads(factor=code.factor, holder_availability=AVAILABILITY)
    ratio = consume_to_earn_ratio(prices(1.0, 1.0), overheads, AVAILABILITY)
    snap = prior_snapshot(AVAILABILITY)
    at50, at100 = paper_example(snap, EXAMPLE_UPLOAD)
    rep = opts.reporter()
    rep.summary(ratio_example={"upload_bytes_per_s": EXAMPLE_UPLOAD, "slack": snap.slack,
                               "backup_bytes_at_50gb": at50.total_bytes,
                               "backup_bytes_at_100gb": at100.total_bytes,
                               "space_region_bytes": at50.regions["space"]},
                availability=AVAILABILITY, target=TARGET, replication_copies=copies,
                erasure_factor=round(code.factor, 4), k=code.k, n=code.n,
                effective_space_gb=round(space, 6), consume_supply_price_ratio=round(ratio, 4))
    rep.say(f"§2.2 at {AVAILABILITY:.0%} availability (12 h/day), {TARGET:.3%} wanted:")
    rep.say(f"  plain replication needs {copies} copies; erasure coding k={code.k} of "
            f"n={code.n} needs a factor of {code.factor:.2f}")
    rep.say(f"§2.5 effective space: {SPACE_GB:g} GB × {AVAILABILITY:g} × 2/3 = {space:g} GB")
    rep.say(f"§2.2 a GB stored costs {ratio:.2f}× what a GB of own disk earns, per day")
    rep.say(f"§3.1 at {EXAMPLE_UPLOAD / 1000:g} KB/s upload (slack {snap.slack:g}), space "
            f"counts up to {at50.regions['space'] / GB:.1f} GB: 50 GB buys "
            f"{at50.total_bytes / GB:.1f} GB of backup, 100 GB buys "
            f"{at100.total_bytes / GB:.1f} GB")


def register(app: typer.Typer) -> None:
    groups.market_app.command("explain")(explain)
