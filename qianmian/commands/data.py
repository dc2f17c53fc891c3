"""Data commands: `recsys validate`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def validate(
    data_dir: Path = typer.Argument(..., help="Directory with one file per contract table."),
    on_dask: bool = typer.Option(False, "--dask", help="Check the chunks and partitions on Dask workers "
                                 "(RECSYS_DASK_SCHEDULER, or a LocalCluster)."),
) -> None:
    """Check a data directory against the data contract and print a summary.

    The tables are read in chunks and checked per partition of cardholders, so memory stays bounded
    whatever their size; the ids the checks need are staged under $RECSYS_HOME and removed after."""
    from contextlib import nullcontext

    from features.contract import ContractError
    from features.partitions import partitioned
    from recsys.cluster import dask_client
    from recsys.config import get_settings

    settings = get_settings()
    try:
        with dask_client(settings) if on_dask else nullcontext() as client, \
                partitioned(data_dir, settings.home / "partitions", settings.dask_partition_size, client,
                            keep_rows=False) as dataset:
            summary = dataset.summary()
    except ContractError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from error
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    typer.echo(summary)
