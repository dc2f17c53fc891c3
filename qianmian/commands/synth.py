"""World commands: `recsys synth` writes a synthetic cardholder world and its hidden truth; `recsys score`
scores a recommendation file against that truth."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import pandas as pd

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("score")(score)


def parse_end(text: str) -> pd.Timestamp:
    """A UTC instant; a bare date means the last second of that day; a naive time is read as UTC."""
    import pandas as pd

    from recsys.times import utc_timestamp

    try:
        stamp = pd.Timestamp(text.strip())
    except (ValueError, TypeError) as error:
        raise typer.BadParameter(f"cannot read {text!r} as a date or time, e.g. 2026-10-31 or "
                                 "2026-10-31T23:59:59Z", param_hint="--end") from error
    if stamp is pd.NaT:
        raise typer.BadParameter(f"{text!r} is not a date", param_hint="--end")
    if _DATE_ONLY.fullmatch(text.strip()):
        stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    return utc_timestamp(stamp)


def synth(
    out: Path = typer.Option(..., "--out", help="Data directory to create (must be new or empty)."),
    users: int = typer.Option(10_000, "--users", help="Number of cardholders."),
    items: int = typer.Option(200, "--items", help="Number of content items (articles, promotions, ...)."),
    days: int = typer.Option(90, "--days", help="Days of history ending at --end."),
    seed: int = typer.Option(7, "--seed", help="Random seed: the same seed gives byte-identical tables."),
    end: str = typer.Option("2026-10-31T23:59:59Z", "--end",
                            help="Last instant of the history and as-of time of the truth (UTC; a date "
                                 "means the end of that day)."),
    truth: Path | None = typer.Option(None, "--truth",
                                      help="Where to write the hidden truth (.npz), outside --out. "
                                           "Default: <out>.truth.npz beside the directory."),
    fmt: str = typer.Option("parquet", "--format", help="Table file format: parquet or csv."),
    force: bool = typer.Option(False, "--force", help="Replace an existing generated data directory."),
    progress: bool = typer.Option(False, "--progress", help="Show a progress bar."),
    scenario: str | None = typer.Option(None, "--scenario",
                                        help="A named world structure: categories (the default world), "
                                             "merchants, needs or sparse-readers; the options below "
                                             "override its settings."),
    taste: str | None = typer.Option(None, "--taste",
                                     help="What links hidden taste to behaviour: categories (spend "
                                          "categories), merchants (individual MCCs) or needs (menu needs)."),
    reader_share: float | None = typer.Option(None, "--reader-share",
                                              help="Share of cardholders who read articles at all, 0-1 "
                                                   "(default world: about 0.6)."),
    tags: str | None = typer.Option(None, "--tags",
                                    help="Content tag vocabulary: topics (topic names), synonyms (three "
                                         "opaque codes per topic) or noisy (topic tags dropped and added)."),
    hour_preference: float | None = typer.Option(None, "--hour-preference",
                                                 help="Weight of each cardholder's preferred hour in the "
                                                      "open logit, 0-4 (0: send hour does not matter)."),
    noise: float | None = typer.Option(None, "--noise",
                                       help="Std of noise between the taste behind opens and the taste "
                                            "spend, menu and reads show, 0-5 (0: none)."),
    campaign_targeting: float | None = typer.Option(None, "--campaign-targeting",
                                                    help="Share of past marketing sends that carried the "
                                                         "day's campaign best matching the cardholder's "
                                                         "taste instead of a random one, 0-1 (0: none)."),
) -> None:
    """Generate a synthetic cardholder world: contract-valid tables plus the hidden truth.

    Hidden tastes drive card spend (real ISO 18245 MCCs), menu clicks, article reads and push answers.
    --scenario and the structure options make worlds whose taste shows through other channels.

    The truth file holds each cardholder's true open probability per item at --end and the response model.
    """
    from worlds import WorldConfig, WorldConfigError, WorldOutputError, generate_world
    from worlds.scenario import SCENARIOS, Scenario

    if scenario is not None and scenario not in SCENARIOS:
        typer.echo(f"error: --scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}", err=True)
        raise typer.Exit(code=2)
    base = SCENARIOS[scenario] if scenario is not None else Scenario()
    structure = base.with_overrides(taste_channel=taste, reader_share=reader_share, tags=tags,
                                    hour_preference=hour_preference, noise=noise,
                                    campaign_targeting=campaign_targeting)
    try:
        config = WorldConfig(users=users, items=items, days=days, seed=seed, end=parse_end(end),
                             fmt=fmt.lower(), scenario=structure)  # type: ignore[arg-type]
    except WorldConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=users, unit="cardholders")

    def advance(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        summary = generate_world(config, out, truth=truth, force=force, progress=advance)
    except WorldOutputError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    except OSError as error:
        typer.echo(f"error: cannot write the world ({error}): choose --out and --truth paths in writable "
                   "directories", err=True)
        raise typer.Exit(code=2) from error
    finally:
        if bar is not None:
            bar.close()
    typer.echo(summary.describe())


def score(
    data: Path = typer.Option(..., "--data", help="The synthetic world's data directory."),
    recs: Path = typer.Option(..., "--recs", help="Recommendation file (.parquet or .csv: user_id, rank, "
                              "content_id), e.g. the `recsys recommend` output."),
    truth: Path | None = typer.Option(None, "--truth", help="The world's hidden truth. Default: "
                                      "<data>.truth.npz beside the directory."),
) -> None:
    """Score recommendations against a synthetic world's truth: share of the popularity-to-oracle gap
    closed by each cardholder's top-1, overall and for cardholders who never read (one JSON line)."""
    import json

    from features.contract import ContractError
    from features.loader import load_dataset
    from training.truth import TruthMismatchError, load_truth, read_recommendations, score_recommendations
    from worlds.generator import default_truth_path
    from worlds.truth import TruthFileError

    try:
        world = load_truth(truth if truth is not None else default_truth_path(data))
        frame = read_recommendations(recs)
        result = score_recommendations(frame, load_dataset(data), world)
    except (TruthFileError, TruthMismatchError, ContractError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from error
    except (OSError, ValueError) as error:
        typer.echo(f"error: cannot score {recs} ({error})", err=True)
        raise typer.Exit(code=2) from error
    typer.echo(json.dumps({key: round(value, 5) for key, value in result.to_dict().items()}))
