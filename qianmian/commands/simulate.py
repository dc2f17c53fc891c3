"""Caps command: `recsys caps simulate` replays a period under candidate policies and compares them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from recsys.bundle import ModelBundle


def register(app: typer.Typer) -> None:
    from qianmian.commands.caps import caps_app

    caps_app.command("simulate")(simulate)


def load_bundle(uri: str) -> ModelBundle:
    """The model bundle behind a models:/, runs:/ URI or a bundle path."""
    from recsys.bundle import ModelBundle
    from recsys.config import get_settings
    from training.tracking import resolved_bundle

    with resolved_bundle(uri, get_settings().tracking_uri) as path:
        return ModelBundle.load(path)


def _simulate_on_dask(data: Path, policies, config, labels, truth, bundle, label: str, candidates: int,
                      users: int | None, seed: int, progress: bool):
    """The replay per partition on Dask, the data split into buckets staged under $RECSYS_HOME/partitions."""
    import sys

    from features.partitions import partitioned
    from recsys.cluster import dask_client
    from recsys.config import get_settings
    from simulation.partitioned import simulate_partitioned

    settings = get_settings()
    with dask_client(settings) as client, \
            partitioned(data, settings.home / "partitions", settings.dask_partition_size, client) as parts:
        # Dask's bar redraws in place: only on a terminal
        return simulate_partitioned(parts, policies, client, config, labels, truth_path=truth, bundle=bundle,
                                    bundle_label=label, k=candidates, max_users=users, seed=seed,
                                    progress=progress and sys.stdout.isatty())


def simulate(
    data: Path = typer.Option(..., "--data", help="Contract data directory of the world to replay."),
    policies: list[str] = typer.Option(
        ..., "--policy",
        help="Policy file (YAML or JSON) to simulate; repeat to compare. `default` is the shipped policy."),
    days: int = typer.Option(
        30, "--days", help="Days to replay, from the first midnight after the data's end."),
    model: str | None = typer.Option(
        None, "--model",
        help="Rank with this model (models:/NAME@champion, runs:/..., or a bundle path). "
             "Default: per-card-tier popularity."),
    truth: Path | None = typer.Option(
        None, "--truth",
        help="Hidden truth of a synthetic world (its response model answers the pushes). Default: "
             "<data>.truth.npz beside the data directory when it exists, else a response model fitted "
             "on the push log."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same report."),
    out: Path | None = typer.Option(
        None, "--out", help="Directory for the PNG charts and report.json (created if needed)."),
    users: int | None = typer.Option(
        None, "--users", min=1, help="Simulate a random sample of this many cardholders (default: all)."),
    candidates: int = typer.Option(
        20, "--candidates", min=1, max=200, help="Ranked candidates per cardholder the caps choose from."),
    slots: str = typer.Option(
        "09:00,12:30,19:30", "--slots",
        help="The scheduler's send slots each day, local times in --scheduler-timezone, comma-separated."),
    scheduler_timezone: str = typer.Option(
        "Asia/Shanghai", "--scheduler-timezone", help="Zone of the scheduler's send slots."),
    mute_weights: str | None = typer.Option(
        None, "--mute-weights",
        help="Compare send or hold settings: each policy as send-all and value-aware at each of these "
             "mute weights (lambda), e.g. 5,10,20. Needs --model with response models."),
    progress: bool = typer.Option(False, "--progress", help="Show a progress bar."),
    on_dask: bool = typer.Option(
        False, "--dask", help="Replay per partition of cardholders on Dask workers (RECSYS_DASK_SCHEDULER, "
                              "or a LocalCluster); the same report."),
) -> None:
    """Replay a period under each policy and compare pushes, reach, opens and mutes, overall and by segment.

    Every policy sees the same cardholders, ranking and random draws, so differences come from the
    policy. Prints tables; with --out also writes summary, blocked-by-rule, segment and daily charts
    (PNG) and the full report as JSON.
    """
    import json
    import time

    from rich.console import Console

    from features.contract import ContractError
    from recsys.atomic import write_text
    from recsys.bundle import BundleError
    from recsys.caps.policy import PolicyError, default_policy, load_policy
    from recsys.models import IncompatibleModelError
    from simulation.charts import write_charts
    from simulation.replay import load_world
    from simulation.report import render_tables
    from simulation.runner import ScheduleConfig, decision_variants
    from simulation.runner import simulate as run
    from simulation.vector_caps import SimulationError
    from training.outputs import OutputPathError, check_output_path
    from training.tracking import TrackingError
    from worlds.generator import default_truth_path
    from worlds.truth import TruthFileError

    console = Console()
    try:
        if out is not None:
            check_output_path(out, "--out", directory=True)
        loaded = [default_policy() if path == "default" else load_policy(path) for path in policies]
    except (PolicyError, OutputPathError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    labels = ["default" if path == "default" else Path(path).stem for path in policies]
    try:
        config = ScheduleConfig(days=days, seed=seed, slots=tuple(part.strip() for part in slots.split(",")),
                                scheduler_timezone=scheduler_timezone)
        if truth is None and default_truth_path(data).is_file():
            truth = default_truth_path(data)
        bundle = load_bundle(model) if model else None
        if mute_weights is not None:
            if bundle is None or bundle.response is None:
                raise SimulationError("--mute-weights compares send or hold settings, which need response "
                                      "models: give --model with a bundle trained by this version")
            try:
                weights = [float(part) for part in mute_weights.split(",") if part.strip()]
            except ValueError as error:
                message = f"--mute-weights {mute_weights!r}: give numbers, e.g. 5,10,20"
                raise SimulationError(message) from error
            loaded, labels = decision_variants(loaded, labels, weights)
        began = time.perf_counter()
        if on_dask:
            report = _simulate_on_dask(data, loaded, config, labels, truth, bundle, model or "", candidates,
                                       users, seed, progress)
            loaded_in, elapsed = 0.0, time.perf_counter() - began
        else:
            world = load_world(data, truth_path=truth, bundle=bundle, bundle_label=model or "", k=candidates,
                               max_users=users, seed=seed)
            loaded_in = time.perf_counter() - began
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=days * len(loaded), unit="day", desc="simulating")
            began = time.perf_counter()
            report = run(world, loaded, config, labels=labels, progress=bar.update if bar else None)
            if bar is not None:
                bar.close()
            elapsed = time.perf_counter() - began
    except ContractError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from error
    except (SimulationError, TruthFileError, BundleError, IncompatibleModelError, TrackingError,
            OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    render_tables(report, console)
    rate = report.world["cardholders"] * days * len(loaded) / elapsed if elapsed else 0.0
    loading = "partitioned, loaded and " if on_dask else f"world loaded in {loaded_in:.1f}s; "
    console.print(f"{loading}simulated in {elapsed:.1f}s "
                  f"({rate:,.0f} cardholder-days/s over {len(loaded)} policies)")
    if out is not None:
        target = Path(out) / "report.json"
        try:
            paths = write_charts(report, out)
            write_text(target, json.dumps(report.to_dict(), indent=2))
        except OSError as error:
            typer.echo(f"error: cannot write the charts and report to --out {out}: {error}", err=True)
            raise typer.Exit(code=2) from error
        for path in [*paths, target]:
            console.print(f"wrote {path}")
