"""`p2pbak market erasure`: the erasure code the paper's §2.2 calls for at an availability."""

from __future__ import annotations

import typer

from p2pbak.commands import groups
from p2pbak.commands.output import Reporter


def erasure(
    availability: float = typer.Option(..., "--availability", "-a",
                                       help="Each supplier's chance of being online (0..1)."),
    target: float = typer.Option(0.99999, "--target", "-t",
                                 help="Wanted chance that a pack can be restored (0..1)."),
    peers: int = typer.Option(256, "--peers", "-p", min=1,
                              help="Supplier peers available (n is at most this)."),
    max_k: int = typer.Option(64, "--max-k", min=1, help="Most data shares per pack (CPU)."),
    max_factor: float = typer.Option(4.0, "--max-factor",
                                     help="Largest expansion n/k when the target is out of reach."),
    json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Copies plain replication needs, and the k-of-n code that reaches the target."""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.market.erasure import choose_code, replication_copies

    out = Reporter(json=json, quiet=quiet)
    copies = replication_copies(availability, target)
    code = choose_code([availability] * peers, target=target, max_k=max_k,
                       max_factor=max_factor)
    out.summary(availability=availability, target=target, peers=peers,
                replication_copies=copies, k=code.k, n=code.n, factor=round(code.factor, 4),
                availability_probability=code.availability, meets_target=code.meets_target,
                repair=code.repair, success=code.success, total=code.total)
    out.say(f"availability {availability:g}, target {target:.6g}, {peers} peers")
    out.say(f"  plain replication: {copies} copies")
    out.say(f"  erasure code: k={code.k} of n={code.n}, factor {code.factor:.2f}, "
            f"P(available) = {code.availability:.7f}")
    out.say(f"  thresholds: repair below {code.repair} live fragments, upload done at "
            f"{code.success}, {code.total} placed")
    if not code.meets_target:
        out.warn(f"target {target:g} out of reach with {peers} peers (factor <= "
                 f"{max_factor:g}): most available code used")


def register(app: typer.Typer) -> None:
    groups.market_app.command("erasure")(erasure)
