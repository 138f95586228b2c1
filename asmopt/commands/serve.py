"""`asmopt serve`: the language server (docs/protocol.md)."""

from __future__ import annotations

import click

from asmopt.commands.common import (
    _fail,
)


@click.command()
@click.option(
    "--stdio", "stdio", is_flag=True, default=True, help="Speak LSP on stdin/stdout (default)."
)
@click.option(
    "--tcp", "tcp", metavar="HOST:PORT", default=None, help="Listen on TCP instead (debugging)."
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="What the server logs to stderr (the editor's output panel).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Check these options and that the server can be loaded, then exit (editors use it "
    "to report a bad configuration before starting the server).",
)
def serve(stdio: bool, tcp: str | None, log_level: str, check: bool) -> None:
    """Run the language server (docs/protocol.md)."""
    address = None
    if tcp is not None:
        host, _, port = tcp.rpartition(":")
        if not port.isdigit():
            _fail(f"--tcp wants HOST:PORT, got {tcp!r}")
        address = (host or "127.0.0.1", int(port))
    from asmopt.server.server import main as serve_main  # pygls only when serving

    if check:
        click.echo("asmopt serve: ok")
        return
    serve_main(address, log_level=log_level.lower())
