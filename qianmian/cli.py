"""`recsys` command: data validation, synthetic worlds, training, caps, publishing and serving."""

from __future__ import annotations

import logging

import typer

from qianmian.commands import register_all

app = typer.Typer(
    name="recsys",
    help="Qianmian: personalised, frequency-capped pushes for a credit-card WeChat account.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


register_all(app)


def main() -> None:
    app()
