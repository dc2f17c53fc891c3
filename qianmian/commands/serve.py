"""Serving commands: `recsys publish`, `recsys serve`, `recsys events export` and `recsys events uplift`."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import typer

logger = logging.getLogger(__name__)

events_app = typer.Typer(help="The ranking API's durable event log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
    app.command("serve")(serve)
    app.add_typer(events_app, name="events")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def run_publish(model_uri: str, data_dir: Path, as_of: str | None, redis_url: str, prefix: str,
                progress: bool = False, on_dask: bool = False):
    """Resolve the model, load the data and publish (per partition of cardholders on Dask with
    `on_dask`, the data read in buckets staged under $RECSYS_HOME/partitions); returns the `PublishReport`."""
    from features.loader import load_dataset

    if on_dask:
        from features.partitions import partitioned
        from publishing.publish import DaskPartitions
        from recsys.cluster import dask_client
        from recsys.config import get_settings

        settings = get_settings()
        work = settings.home / "partitions"
        with dask_client(settings) as client, \
                partitioned(data_dir, work, settings.dask_partition_size, client) as parts:
            return _publish(model_uri, parts, as_of, redis_url, prefix, False,
                            DaskPartitions(client, redis_url, parts, progress=progress))
    return _publish(model_uri, load_dataset(data_dir), as_of, redis_url, prefix, progress, None)


def _publish(model_uri: str, dataset, as_of: str | None, redis_url: str, prefix: str, progress: bool, dask):
    import pandas as pd

    from publishing.publish import bundle_fingerprint, publish
    from recsys.bundle import ModelBundle
    from recsys.config import get_settings
    from recsys.publication import PublicationStore
    from recsys.redis_client import connect
    from training.tracking import registry_source, resolved_bundle

    tracking_uri = get_settings().tracking_uri
    # The alias is read once: the bundle published is the version recorded, even if the alias moves.
    registry = registry_source(model_uri, tracking_uri)
    source = f"models:/{registry[0]}/{registry[1]}" if registry else model_uri
    client = connect(redis_url, socket_timeout=30, socket_connect_timeout=5)
    try:
        with resolved_bundle(source, tracking_uri) as path:
            bundle = ModelBundle.load(path)
            fingerprint = bundle_fingerprint(path)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(dataset.cardholders), unit="cardholder", desc="publish")
        report = publish(
            bundle, dataset, PublicationStore(client, prefix),
            as_of=pd.Timestamp(as_of) if as_of else None, model_uri=model_uri, registry=registry,
            fingerprint=fingerprint, progress=bar.update if bar is not None else None, dask=dask,
        )
        if bar is not None:
            bar.close()
        return report
    finally:
        client.close()


def publish(
    model: str = typer.Option(..., "--model", help="Model URI: models:/NAME@champion, runs:/ID/model or a "
                              "bundle directory."),
    data: Path = typer.Option(None, "--data", help="Data directory (contract tables) with the cardholders "
                              "to publish [default: RECSYS_DATA_DIR]."),
    as_of: str = typer.Option(None, "--as-of", help="Eligibility and feature time, ISO 8601 "
                              "[default: the bundle's as-of]."),
    redis_url: str = typer.Option(None, "--redis", help="Redis URL [default: RECSYS_REDIS_URL]."),
    prefix: str = typer.Option(None, "--prefix", help="Key prefix [default: RECSYS_REDIS_PREFIX]."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    progress: bool = typer.Option(False, "--progress", help="Show a progress bar."),
    on_dask: bool = typer.Option(False, "--dask", help="Compute and write the cardholders per partition on "
                                 "Dask workers (RECSYS_DASK_SCHEDULER, or a LocalCluster)."),
) -> None:
    """Compute every cardholder's serving state and make them live in Redis atomically.

    Writes a new version, switches the live pointer only once the version is complete (a publish
    that fails leaves the live version untouched), keeps the previous version until the next
    publish and deletes older ones.
    """
    import redis

    from recsys.config import get_settings

    settings = get_settings()
    data = data or settings.data_dir
    if data is None:
        raise _fail("no data directory: pass --data DIR or set RECSYS_DATA_DIR", 2)
    try:
        report = run_publish(model, Path(data), as_of, redis_url or settings.redis_url,
                             prefix or settings.redis_prefix, progress, on_dask)
    except (ValueError, FileNotFoundError) as error:
        raise _fail(str(error)) from error
    except redis.RedisError as error:
        raise _fail(f"Redis failed during publish ({error}); the live version is unchanged") from error
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    memory = f", {report.redis_bytes_per_user:.0f} B in Redis" if report.redis_bytes_per_user else ""
    typer.echo(
        f"published {report.version}: {report.users:,} cardholders, {report.items} items, d={report.dim}, "
        f"{report.record_bytes_mean:.0f} B/cardholder record{memory}; "
        f"{report.seconds:.1f}s\n"
        f"previous live version: {report.previous or 'none'}; deleted: {', '.join(report.deleted) or 'none'}"
    )


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes."),
    model: str = typer.Option(None, "--model", help="Publish this model URI first unless it is already "
                              "live [default: RECSYS_MODEL_URI; needs --data or RECSYS_DATA_DIR]."),
    data: Path = typer.Option(None, "--data", help="Data directory for publishing --model."),
) -> None:
    """Run the ranking API (uvicorn) configured by RECSYS_* variables; OpenAPI docs at /docs."""
    import uvicorn

    from qianmian.logs import server_log_config
    from recsys.config import get_settings

    settings = get_settings()
    model = model or settings.model_uri
    data = data or settings.data_dir
    if model:
        if data is None:
            raise _fail("--model needs a data directory to publish from: pass --data or set "
                        "RECSYS_DATA_DIR", 2)
        ensure_published(model, Path(data))
    if settings.studio_model_uri and ":/" in settings.studio_model_uri[:10]:
        os.environ["RECSYS_STUDIO_MODEL_URI"] = str(local_studio_model(settings.studio_model_uri))
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = (settings.home / "metrics").resolve()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run(
        "serving.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
        loop="uvloop", http="httptools", access_log=False, log_level=settings.log_level.lower(),
        log_config=server_log_config(settings.log_level),
    )


def local_studio_model(model_uri: str) -> Path:
    """A copy of the studio's model (models:/ or runs:/ URI) under RECSYS_HOME/studio/model, so the API
    loads a bundle directory and never opens the registry itself."""
    from recsys.atomic import atomic_directory
    from recsys.config import get_settings
    from training.tracking import TrackingError, resolved_bundle

    settings = get_settings()
    target = (settings.home / "studio" / "model").resolve()
    try:
        with resolved_bundle(model_uri, settings.tracking_uri) as path, atomic_directory(target) as staging:
            shutil.copytree(path, staging, dirs_exist_ok=True)
    except TrackingError as error:
        raise _fail(f"RECSYS_STUDIO_MODEL_URI: {error}") from error
    logger.info("studio model %s copied to %s", model_uri, target)
    return target


def ensure_published(model_uri: str, data_dir: Path) -> None:
    """Publish `model_uri` unless the live version was published from the same bundle."""
    import redis

    from publishing.publish import bundle_fingerprint
    from recsys.config import get_settings
    from recsys.publication import PublicationError, PublicationStore
    from training.tracking import resolved_bundle

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        store = PublicationStore(client, settings.redis_prefix)
        live = store.live_version()
        with resolved_bundle(model_uri, settings.tracking_uri) as path:
            wanted = bundle_fingerprint(path)
        if live is not None:
            try:
                if store.load(live).manifest.get("fingerprint") == wanted:
                    logger.info("model %s is already live as %s", model_uri, live)
                    return
            except PublicationError:
                pass
    finally:
        client.close()
    report = run_publish(model_uri, data_dir, None, settings.redis_url, settings.redis_prefix)
    logger.info("published %s as %s before serving", model_uri, report.version)


@events_app.command("export")
def export_events(
    out: Path = typer.Option(..., "--out", help="Directory to write push_log.parquet into."),
    log: Path = typer.Option(None, "--log", help="Event log path [default: RECSYS_PUSH_LOG_PATH or "
                             "RECSYS_HOME/events/push_log.jsonl]."),
) -> None:
    """Write the API's event log as the data contract's `push_log` table (for training)."""
    from recsys.config import get_settings
    from serving.event_log import EventLog, EventLogError, export_push_log

    event_log = EventLog(log or get_settings().event_log_path)
    if not event_log.files():
        raise _fail(f"no event log files next to {event_log.path}: check --log or RECSYS_HOME")
    try:
        target, rows = export_push_log(event_log, out)
    except EventLogError as error:
        raise _fail(str(error)) from error
    typer.echo(f"wrote {rows:,} pushes to {target}")


@events_app.command("uplift")
def uplift(
    data: Path = typer.Option(..., "--data", help="Contract data directory whose cardholders the scheduler "
                              "asks about (the opted-in ones are counted)."),
    since: str = typer.Option(..., "--since", help="Start of the period (ISO 8601, UTC if no zone)."),
    until: str = typer.Option(None, "--until", help="End of the period, exclusive (default: now)."),
    control_share: float = typer.Option(..., "--control-share", help="The policy's decision.control_share "
                                        "over the period."),
    mute_weight: float = typer.Option(10.0, "--mute-weight", min=0.0, help="The price of a mute in opens "
                                      "(the policy's decision.mute_weight)."),
    log: Path = typer.Option(None, "--log", help="Event log path [default: RECSYS_PUSH_LOG_PATH or "
                             "RECSYS_HOME/events/push_log.jsonl]."),
) -> None:
    """The send-or-hold decision's uplift from the API's event log: value per cardholder (opens - mute
    weight x mutes), treated against the policy's control share, with a 95% interval."""
    import pandas as pd

    from features.contract import TABLES, ContractError
    from features.loader import load_table
    from recsys.config import get_settings
    from recsys.times import parse_utc
    from recsys.uplift import UpliftError, push_log_uplift
    from serving.event_log import EventLog, EventLogError, push_log_frame

    try:
        start = parse_utc(since, "--since")
        end = pd.Timestamp.now(tz="UTC") if until is None else parse_utc(until, "--until")
    except ValueError as error:
        raise _fail(str(error), 2) from error
    cardholders, violations = load_table(data, TABLES["cardholders"])
    if violations:
        raise _fail(str(ContractError(violations)))
    opted = cardholders["push_opt_in"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    event_log = EventLog(log or get_settings().event_log_path)
    if not event_log.files():
        raise _fail(f"no event log files next to {event_log.path}: check --log or RECSYS_HOME")
    try:
        measured = push_log_uplift(push_log_frame(event_log.read()),
                                   cardholders.loc[opted, "user_id"].to_numpy(), control_share,
                                   start, end, mute_weight)
    except (UpliftError, EventLogError) as error:
        raise _fail(str(error)) from error
    typer.echo("\n".join(measured.lines()))
