"""`kubectl webhooks`: the kubectl plugin. Its commands (emit, deliveries, replay, ping,
rotate-secret, ...) arrive with the delivery service; for now it reports its version."""

from __future__ import annotations

import typer

from webhook_operator import __version__

app = typer.Typer(
    help="Inspect and drive webhook deliveries.", no_args_is_help=True, add_completion=False
)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


@app.callback()
def _root() -> None:
    """Inspect and drive webhook deliveries."""


def main() -> None:
    app()
