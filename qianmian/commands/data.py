"""Data commands: `recsys validate`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def validate(
    data_dir: Path = typer.Argument(..., help="Directory with one file per contract table."),
) -> None:
    """Check a data directory against the data contract and print a summary."""
    from features.contract import ContractError
    from features.loader import load_dataset

    try:
        dataset = load_dataset(data_dir)
    except ContractError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from error
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    typer.echo(dataset.summary())
