"""`p2pbak ui`: the settings window of §3.1 as a local web page (127.0.0.1, token URL)."""

from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from p2pbak.commands.options import Options, with_options
from p2pbak.config import load

PortOpt = Annotated[int, typer.Option(
    "--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free one).")]
NoBrowserOpt = Annotated[bool, typer.Option(
    "--no-browser", help="Only print the URL; do not open a browser.")]


@with_options(password=False)
def ui(opts: Options, port: PortOpt = 0, no_browser: NoBrowserOpt = False) -> None:
    """Open the settings page: three sliders (space, upload, download) and the backup space
    they buy. Serves on 127.0.0.1 until stopped (Ctrl-C); the printed URL carries its token."""
    # imported here, not at the top: keeps CLI start-up fast
    import asyncio

    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.net.serving import wait_for_signal
    from p2pbak.ui.server import Page, start

    rep = opts.reporter()
    load(opts.config)  # a clear error now if this machine is not initialised

    async def main() -> None:
        runner, url = await start(Page(opts.config), port)
        rep.summary(settings_url=url)
        rep.say(f"settings page: {url}\n(Ctrl-C stops it)")
        if not no_browser:
            webbrowser.open(url)
        try:
            await wait_for_signal()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
