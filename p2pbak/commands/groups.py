"""Sub-command groups shared by several command modules."""

import typer

market_app = typer.Typer(help="The hidden market: erasure parameters, prices, simulation.",
                         no_args_is_help=True)
supply_app = typer.Typer(help="What this machine lends: space, upload, download caps.",
                         no_args_is_help=True)
peer_app = typer.Typer(help="The peer agent that stores other users' fragments.",
                       no_args_is_help=True)

admin_app = typer.Typer(help="Operator tools for the coordinator's database.",
                        no_args_is_help=True)

key_app = typer.Typer(help="The passphrase that unlocks your master key.",
                      no_args_is_help=True)
machines_app = typer.Typer(help="Your machines: list them, revoke a lost or stolen one.",
                           no_args_is_help=True)

GROUPS = {"market": market_app, "supply": supply_app, "peer": peer_app, "admin": admin_app,
          "key": key_app, "machines": machines_app}
