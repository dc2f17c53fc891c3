"""Registry commands: `recsys models list | show | compare | promote` over the MLflow store."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

import typer

models_app = typer.Typer(
    name="models",
    help="Registered model versions: list, show, compare, and promote one to champion (audited).",
    no_args_is_help=True,
)

NAME_HELP = "Registered model name (default: RECSYS_REGISTERED_MODEL_NAME, qianmian-push-ranker)."


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


def _registry():
    from recsys.config import get_settings
    from training.tracking import Registry, TrackingError

    try:
        return Registry(get_settings().tracking_uri)
    except TrackingError as error:
        raise _fail(str(error), code=2) from error


def _name(name: str | None) -> str:
    from recsys.config import get_settings

    return name or get_settings().registered_model_name


def _console():
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    return console if console.is_terminal else Console(highlight=False, soft_wrap=True, width=160)


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@models_app.command("list")
def list_versions(
    name: str | None = typer.Option(None, "--name", help=NAME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every registered version, newest first: alias, run, gate metric, created."""
    from rich.table import Table

    from training.promotion import display_name, gate_metric
    from training.tracking import TrackingError, metric_key

    registry = _registry()
    model = _name(name)
    try:
        versions = registry.versions(model)
    except TrackingError as error:
        raise _fail(str(error)) from error
    rows = []
    for info in versions:
        metric = gate_metric(info) or "ndcg@10"
        rows.append({"version": info.version, "aliases": list(info.aliases), "run_id": info.run_id,
                     "run_name": info.run_name, "created": info.created.isoformat(),
                     "as_of": info.params.get("as_of"), "metric": metric,
                     "value": info.metrics.get(metric_key(metric)),
                     "promoted_by": info.tags.get("champion.promoted_by")})
    if as_json:
        typer.echo(json.dumps({"model": model, "versions": rows}, indent=2))
        return
    table = Table(title=f"{model}: {len(rows)} version(s); champion is what the ranking API publishes")
    for column, justify in (("version", "right"), ("alias", "left"), ("gate metric", "left"),
                            ("value", "right"), ("run", "left"), ("created", "left")):
        table.add_column(column, justify=justify)
    for info, row in zip(versions, rows, strict=True):
        table.add_row(info.version, ", ".join(info.aliases) or "-", display_name(row["metric"]),
                      _value(row["value"]), info.run_name or info.run_id or "-", _when(info.created),
                      style="bold" if "champion" in info.aliases else None)
    _console().print(table)


@models_app.command("show")
def show(
    version: str = typer.Argument(..., help="Version number, or an alias such as champion."),
    name: str | None = typer.Option(None, "--name", help=NAME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """One version: its run, data, as-of time, holdout metrics and promotion record."""
    from recsys.config import get_settings
    from training.promotion import audit_path, audit_records, headline_metrics
    from training.tracking import TrackingError

    registry = _registry()
    model = _name(name)
    try:
        number = _resolve(registry, model, version)
        info = registry.version(model, number)
        history = audit_records(audit_path(get_settings().home), model, info.version)
    except TrackingError as error:
        raise _fail(str(error)) from error
    metrics = headline_metrics(info)
    if as_json:
        typer.echo(json.dumps({"model": model, "version": info.version, "aliases": list(info.aliases),
                               "run_id": info.run_id, "run_name": info.run_name,
                               "created": info.created.isoformat(), "source": info.source,
                               "as_of": info.params.get("as_of"), "data_dir": info.params.get("data_dir"),
                               "metrics": metrics, "tags": info.tags, "promotions": history}, indent=2))
        return
    echo = typer.echo
    echo(f"{model} version {info.version}" + (f" ({', '.join(info.aliases)})" if info.aliases else ""))
    echo(f"  created:   {_when(info.created)}")
    echo(f"  run:       {info.run_name or '-'} ({info.run_id or 'no run'})")
    echo(f"  data:      {info.params.get('data_dir', '-')}, as of {info.params.get('as_of', '-')}")
    echo(f"  model URI: models:/{model}/{info.version}")
    echo("  holdout metrics:")
    for metric, value in metrics.items():
        echo(f"    {metric:<32} {value:.4f}")
    if history:
        echo("  promotions by hand:")
        for record in history:
            echo(f"    {record['at']} by {record['by']} (from version {record.get('previous') or 'none'}): "
                 f"{record['reason']}")


def _resolve(registry, model: str, version: str) -> str:
    """A version number, or the version an alias points at."""
    from training.tracking import TrackingError

    if version.isdigit():
        return version
    aliases = registry.aliases(model)
    if version not in aliases:
        raise TrackingError(f"{model!r} has no version or alias {version!r} "
                            f"(aliases: {', '.join(sorted(aliases)) or 'none'})")
    return aliases[version]


@models_app.command("compare")
def compare(
    first: str = typer.Argument(..., help="Version number or alias (e.g. champion)."),
    second: str = typer.Argument(..., help="Version number or alias."),
    name: str | None = typer.Option(None, "--name", help=NAME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Two versions' holdout metrics side by side, with the difference."""
    from rich.table import Table

    from training.promotion import compare as compare_versions
    from training.tracking import TrackingError

    registry = _registry()
    model = _name(name)
    try:
        result = compare_versions(registry, model, _resolve(registry, model, first),
                                  _resolve(registry, model, second))
    except TrackingError as error:
        raise _fail(str(error)) from error
    a, b = result.first, result.second
    if as_json:
        metrics = {metric: {"first": x, "second": y} for metric, x, y in result.rows}
        typer.echo(json.dumps({"model": model, "first": a.version, "second": b.version, "metrics": metrics},
                              indent=2))
        return
    table = Table(title=f"{model}: version {a.version} vs {b.version} (holdout of each run)")
    table.add_column("metric")
    for info in (a, b):
        label = f"v{info.version}" + (f" ({', '.join(info.aliases)})" if info.aliases else "")
        table.add_column(label, justify="right")
    table.add_column(f"v{b.version} - v{a.version}", justify="right")
    for metric, x, y in result.rows:
        delta = "-" if x is None or y is None else f"{y - x:+.4f}"
        table.add_row(metric, _value(x), _value(y), delta)
    console = _console()
    console.print(table)
    for info in (a, b):
        console.print(f"v{info.version}: {info.run_name or info.run_id} "
                      f"(data {info.params.get('data_dir', '-')}, as of {info.params.get('as_of', '-')})")
    if a.params.get("as_of") != b.params.get("as_of") or a.params.get("data_dir") != b.params.get("data_dir"):
        console.print("note: the two runs were evaluated on different data or holdout periods, "
                      "so their metrics are not measured on the same cardholders")


@models_app.command("promote")
def promote(
    version: str = typer.Argument(..., help="Version number to make the champion."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit record)."),
    by: str | None = typer.Option(None, "--by", help="Who promotes (default: the OS user)."),
    name: str | None = typer.Option(None, "--name", help=NAME_HELP),
) -> None:
    """Point the `champion` alias at VERSION, recording who, when, why and the metrics at the time.

    The record goes to the version's `champion.*` tags and to RECSYS_HOME/registry/champion-audit.jsonl.
    The ranking API serves the new champion after the next `recsys publish`.
    """
    from recsys.config import get_settings
    from training.outputs import OutputPathError
    from training.promotion import PromotionError, audit_path
    from training.promotion import promote as promote_version
    from training.tracking import TrackingError

    registry = _registry()
    model = _name(name)
    audit_file = audit_path(get_settings().home)
    try:
        record = promote_version(registry, model, version, reason, by if by is not None else _os_user(),
                                 datetime.now(tz=UTC), audit_file)
    except (PromotionError, TrackingError) as error:
        raise _fail(str(error)) from error
    except (OutputPathError, OSError) as error:
        raise _fail(f"{error}: the champion was left unchanged", code=2) from error
    typer.echo(f"champion of {model}: version {record.previous or 'none'} -> {record.version} "
               f"by {record.by} at {record.at}")
    typer.echo(f"reason: {record.reason}")
    typer.echo(f"audit: {audit_file}")
    typer.echo(f"publish it: recsys publish --model models:/{model}@champion --data DIR")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. a container user)
        import os

        return f"uid {os.getuid()}"
