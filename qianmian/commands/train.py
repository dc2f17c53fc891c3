"""Training commands: `recsys train` (fit, evaluate, log, register) and `recsys recommend` (batch top-k)."""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path

import typer

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("recommend")(recommend)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


def train(
    data: Path = typer.Option(..., "--data", help="Contract data directory (see docs/data-contract.md)."),
    as_of: str | None = typer.Option(None, "--as-of", help="Cutoff time (ISO 8601, UTC if no zone). "
                                     "Default: the last event in the data."),
    config: Path | None = typer.Option(None, "--config", help="Training configuration YAML "
                                       "(e.g. training/configs/default.yaml). Default: built-in defaults."),
    experiment: str = typer.Option("qianmian", "--experiment", help="MLflow experiment name."),
    model_out: Path | None = typer.Option(None, "--model-out", help="Also write the model bundle here."),
    register_model: bool = typer.Option(True, "--register/--no-register",
                                        help="Register the model and consider it for the champion alias."),
    metric: str | None = typer.Option(None, "--metric", help="Metric that decides the champion, e.g. "
                                      "ndcg@10, map@10, recall@10, auc. Default: from the config (ndcg@10)."),
    k: int | None = typer.Option(None, "--k", help="Cut-off for the top-k metrics. "
                                 "Default: from the config."),
    truth: Path | None = typer.Option(None, "--truth", help="Hidden truth of a synthetic world "
                                      "(default: <DATA>.truth.npz beside the data, if it exists)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    track: bool = typer.Option(True, "--track/--no-track", help="Log the run to MLflow (the store "
                               "from RECSYS_MLFLOW_TRACKING_URI, default SQLite under RECSYS_HOME)."),
    tune: bool = typer.Option(False, "--tune", help="First search feature family weights, dimensions, "
                              "loss, epochs, learning rate and regularisation (seeded TPE) on a validation "
                              "window just before the holdout; each trial is a nested MLflow run."),
    budget: float = typer.Option(5.0, "--budget", min=0.1, help="Minutes the --tune search may take "
                                 "(at most 60 trials)."),
    sample_users: int | None = typer.Option(None, "--sample-users", min=1, help="Above this many "
                                            "cardholders, train on a seeded sample of this many, loading "
                                            "only their rows [default: RECSYS_TRAIN_SAMPLE_USERS, 50000]."),
    on_dask: bool = typer.Option(False, "--dask", help="When sampling, check and bucket the data and "
                                 "gather the sample on Dask workers (RECSYS_DASK_SCHEDULER, or a "
                                 "LocalCluster closed before the fit); the fit runs here."),
    response_from: str | None = typer.Option(None, "--response-from", help="Keep the response models "
                                             "(P(open), P(mute)) of this bundle path or models:/ URI, e.g. "
                                             "models:/qianmian-push-ranker@champion, instead of refitting "
                                             "them on a push log the decision chose (README)."),
    decided_since: str | None = typer.Option(None, "--decided-since", help="When the send-or-hold "
                                             "decision began (ISO 8601, UTC if no zone): the response "
                                             "models learn only from pushes before it and, after it, "
                                             "from the policy's control share's (--control-share)."),
    control_share: float = typer.Option(0.0, "--control-share", min=0.0, max=0.5, help="The policy's "
                                        "decision.control_share while it decided (with --decided-since)."),
) -> None:
    """Fit the LightFM hybrid, evaluate it against baselines, log to MLflow and register it.

    Builds point-in-time features, holds out the last days before the as-of time, compares with the
    popularity, plain-hybrid and implicit baselines (per slice of cardholders too), refits up to the
    as-of time, writes the model bundle, logs the run (metrics, curves, report, pyfunc model) and moves
    the `champion` alias only when the new model beats the baselines and the current champion on the
    chosen metric beyond noise (95% bootstrap intervals over the holdout cardholders).
    """
    from rich.console import Console

    from features.contract import ContractError
    from recsys.cluster import dask_client
    from recsys.config import get_settings
    from recsys.times import parse_utc
    from training.config import TrainConfigError, load_config
    from training.job import TrainOptions
    from training.job import train as run_training
    from training.outputs import OutputPathError

    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=120)
    settings = get_settings()
    try:
        decided = None if decided_since is None else parse_utc(decided_since, "--decided-since")
    except ValueError as error:
        raise _fail(str(error), code=2) from error
    try:
        train_config = load_config(config)
        if metric is not None or k is not None:
            train_config = train_config.with_overrides(metric=metric, k=k)
        options = TrainOptions(
            data_dir=data, config=train_config, as_of=as_of, experiment=experiment, model_out=model_out,
            register=register_model, progress=progress, truth_path=truth,
            registered_model_name=settings.registered_model_name, track=track,
            tune_minutes=budget if tune else None,
            sample_users=sample_users or settings.train_sample_users, work_dir=settings.home / "partitions",
            partition_size=settings.dask_partition_size,
            cluster=partial(dask_client, settings) if on_dask else None, response_from=response_from,
            decided_since=decided, control_share=control_share,
        )
        console.print(f"[bold]Training on {data}[/bold]")
        result = run_training(options, echo=console.print)
    except ContractError as error:
        raise _fail(str(error)) from error
    except (FileNotFoundError, TrainConfigError, OutputPathError) as error:
        raise _fail(str(error), code=2) from error
    except ValueError as error:
        raise _fail(str(error)) from error
    except OSError as error:
        raise _fail(f"{error}: check that --data is readable and --model-out is a writable path",
                    code=2) from error
    _print_summary(console, result, train_config.metric)


def _print_tuning(console, tuning) -> None:
    summary = tuning.summary()
    console.print(f"  tuned: {summary['trials']} trials in {summary['seconds']:.0f} s on "
                  f"{summary['validation'][0][:10]} .. {summary['validation'][1][:10]}; trial "
                  f"{summary['best_trial']} chosen (objective {summary['best_objective']:.4f}: "
                  f"{summary['objective']})")
    console.print("  chosen: " + ", ".join(f"{key.split('.', 1)[1]}={value:.3g}" if isinstance(value, float)
                                           else f"{key.split('.', 1)[1]}={value}"
                                           for key, value in summary["chosen"].items()))


def _print_summary(console, result, metric: str) -> None:
    from rich.table import Table

    k_metrics = [name for name in next(iter(result.results.values())) if "@" in name or name == "auc"]
    k_metrics = [name for name in k_metrics if not name.startswith(("cold.", "slice."))
                 and not name.endswith((".low", ".high"))]
    table = Table(title=f"Holdout {result.split:%Y-%m-%d %H:%M} .. {result.as_of:%Y-%m-%d %H:%M} UTC "
                        f"({int(next(iter(result.results.values()))['users']):,} cardholders)")
    table.add_column("model")
    for name in k_metrics:
        table.add_column(_short(name), justify="right")
    cold_metric = f"cold.{metric}"
    table.add_column(f"{_short(metric)} no reads", justify="right")
    first = next(iter(result.results.values()))
    table.add_column(f"push AUC ({int(first.get('push_users', 0)):,})", justify="right")
    table.add_column(f"push AUC no reads ({int(first.get('cold.push_users', 0)):,})", justify="right")
    for model, values in result.results.items():
        style = "bold" if model == "lightfm" else None
        table.add_row(model, *[f"{values.get(name, float('nan')):.4f}" for name in k_metrics],
                      f"{values.get(cold_metric, float('nan')):.4f}",
                      f"{values.get('push_auc', float('nan')):.4f}",
                      f"{values.get('cold.push_auc', float('nan')):.4f}", style=style)
    console.print(table)
    if result.tuning is not None:
        _print_tuning(console, result.tuning)
    for name, value in result.lift.items():
        console.print(f"  {name}: x{value:.2f}")
    _print_slices(console, result, metric)
    for name, comparison in result.comparisons.items():
        verdict = "above" if comparison.beaten else "NOT above"
        console.print(f"  vs {comparison.describe(name)}: {verdict}")
    if result.truth:
        truth = Table(title="Expected open rate of the top-1 push (hidden truth)")
        truth.add_column("ranking")
        truth.add_column("open rate", justify="right")
        for name, value in result.truth.items():
            truth.add_row(name.removeprefix("open_rate_top1."), f"{value:.4f}")
        console.print(truth)
    if result.run_id:
        console.print(f"run id:    {result.run_id}")
        console.print(f"model URI: {result.model_uri}  (also runs:/{result.run_id}/model)")
    if result.version:
        console.print(f"registered: models:/{result.registered_name}/{result.version}")
    if result.decision:
        colour = "green" if result.champion_moved else "yellow"
        console.print(f"[{colour}]champion: {result.decision}[/{colour}]")
    if result.bundle_path:
        console.print(f"bundle written to {result.bundle_path}")


def _print_slices(console, result, metric: str) -> None:
    """The chosen metric per slice of cardholders, with its 95% bootstrap interval, per model."""
    from rich.table import Table

    first = next(iter(result.results.values()))
    slices = [key.removeprefix("slice.").removesuffix(".users") for key in first
              if key.startswith("slice.") and key.endswith(".users")]
    if not slices:
        return
    table = Table(title=f"{metric} per slice (95% bootstrap interval over the slice's cardholders)")
    table.add_column("model")
    for name in slices:
        table.add_column(f"{name} ({int(first[f'slice.{name}.users']):,})", justify="right")
    for model, values in result.results.items():
        cells = []
        for name in slices:
            key = f"slice.{name}.{metric}"
            low, high = values.get(f"{key}.low", float("nan")), values.get(f"{key}.high", float("nan"))
            cells.append(f"{values.get(key, float('nan')):.4f} [{low:.4f}, {high:.4f}]")
        table.add_row(model, *cells, style="bold" if model == "lightfm" else None)
    console.print(table)


def _short(metric: str) -> str:
    name, _, k = metric.partition("@")
    label = {"precision": "P", "recall": "R", "ndcg": "nDCG", "map": "MAP", "coverage": "cov", "auc": "AUC"}
    return label.get(name, name) + (f"@{k}" if k else "")


def recommend(
    model: str = typer.Option(..., "--model", help="models:/NAME@champion, models:/NAME/VERSION, "
                              "runs:/ID/model or a bundle directory."),
    data: Path = typer.Option(..., "--data", help="Contract data directory with the cardholders to rank."),
    out: Path = typer.Option(..., "--out", help="Output file: .parquet or .csv (user_id, rank, content_id, "
                             "score)."),
    k: int = typer.Option(10, "--k", min=1, help="Recommendations per cardholder."),
    as_of: str | None = typer.Option(None, "--as-of", help="Eligibility time (validity windows, already "
                                     "read/pushed). Default: the last event in the data."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    on_dask: bool = typer.Option(False, "--dask", help="Rank partitions on Dask (RECSYS_DASK_SCHEDULER, or a "
                                 "LocalCluster); --out .parquet becomes a directory of Parquet parts."),
) -> None:
    """Write the top-k eligible contents for every cardholder to a recommendation file."""
    from features.contract import ContractError
    from recsys.config import get_settings
    from training.outputs import OutputPathError, check_output_path
    from training.recommend import write_recommendations

    if out.suffix.lower() not in (".parquet", ".csv"):
        raise _fail(f"--out {out} must end in .parquet or .csv", code=2)
    if on_dask and out.suffix.lower() != ".parquet":
        raise _fail(f"--out {out}: with --dask the output is a directory of Parquet parts: end it in "
                    ".parquet",
                    code=2)
    settings = get_settings()
    try:
        check_output_path(out, "--out", directory=on_dask)
        if on_dask:
            from recsys.cluster import dask_client

            with dask_client(settings) as client:
                # Dask's bar redraws in place: only on a terminal
                rows = write_recommendations(model, data, out, k, as_of, settings.tracking_uri,
                                             progress and sys.stdout.isatty(), client=client,
                                             partition_size=settings.dask_partition_size,
                                             work=settings.home / "partitions")
        else:
            rows = write_recommendations(model, data, out, k, as_of, settings.tracking_uri, progress)
    except ContractError as error:
        raise _fail(str(error)) from error
    except (FileNotFoundError, OutputPathError) as error:
        raise _fail(str(error), code=2) from error
    except ValueError as error:
        raise _fail(str(error)) from error
    except OSError as error:
        raise _fail(f"{error}: check that --data and --model are readable and --out is a writable path",
                    code=2) from error
    typer.echo(f"wrote {rows:,} recommendations to {out}")
