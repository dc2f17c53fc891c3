"""`recsys train`: features -> fit -> time-split evaluation vs baselines -> refit -> bundle -> MLflow.

Nothing is written to the tracking store until every model is fitted, evaluated and the bundle is
built, and the model is registered (and `champion` moved) only after its run logged successfully, so
bad input never leaves a half-registered model.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from features.bundle_inputs import card_tiers_of, item_metadata, seen_pairs
from features.loader import Dataset
from features.partitions import load_sample
from features.pipeline import EmptyDataError, build_training_matrices
from features.timecut import parse_as_of
from recsys import metrics as ranking_metrics
from recsys.bundle import ModelBundle, build_eligibility
from recsys.matrices import TrainingMatrices
from recsys.models import Recommender
from recsys.ranking import top_k
from training.config import TrainConfig
from training.evaluate import Holdout, HoldoutError, epoch_scorer, evaluate, make_holdout, recommend_holdout
from training.outputs import check_output_path
from training.selection import Selection, choose_on_validation
from training.tune import TuneResult, tune

if TYPE_CHECKING:
    from distributed import Client

    from training.response import ResponseFitConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")

MODEL_NAME = "lightfm"
# the response models' own wall time; they run beside the stages from "choose on validation" on
RESPONSE_STAGE = "fit response models (in parallel)"
POPULARITY = "popularity"


@dataclass(frozen=True)
class TrainOptions:
    data_dir: Path
    config: TrainConfig
    as_of: str | None = None
    experiment: str = "qianmian"
    model_out: Path | None = None
    register: bool = True
    progress: bool = True
    truth_path: Path | None = None
    tracking_uri: str | None = None
    artifact_root: Path | None = None
    registered_model_name: str = "qianmian-push-ranker"
    track: bool = True
    tune_minutes: float | None = None
    # above this many cardholders, train on a sample of this many drawn with the config's seed,
    # loading only their rows (the rest is checked while streaming, staged under `work_dir`)
    sample_users: int | None = None
    work_dir: Path | None = None
    partition_size: int = 150_000
    # opens a Dask client whose workers check, bucket and gather the sample (closed before the fit)
    cluster: Callable[[], AbstractContextManager[Client]] | None = None
    # a bundle path or models:/ or runs:/ URI whose response models the new bundle keeps instead of
    # fitting its own (`kept_response_models`: README, "What the retrain at 20,000 cardholders changes")
    response_from: str | None = None
    # the response models learn only from pushes the send-or-hold decision did not choose: those before
    # `decided_since` and the policy's control share's (`training.response.evidence`); None: every push
    decided_since: pd.Timestamp | None = None
    control_share: float = 0.0


@dataclass
class TrainResult:
    as_of: pd.Timestamp
    split: pd.Timestamp
    results: dict[str, dict[str, float]]
    truth: dict[str, float]
    lift: dict[str, float]
    timings: dict[str, float]
    curves: dict[str, list[float]]
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    run_id: str | None = None
    model_uri: str | None = None
    version: str | None = None
    registered_name: str | None = None
    champion_moved: bool = False
    decision: str = ""
    response_report: Any = None  # training.response.ResponseFitReport, when the response models were fitted
    bundle_path: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    tuning: TuneResult | None = None
    selection: Selection | None = None


class Stages:
    """Wall time per named stage, and a line on the terminal as each one finishes."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.timings: dict[str, float] = {}
        self.echo = echo

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.record(name, time.perf_counter() - start)

    def record(self, name: str, seconds: float) -> None:
        self.timings[name] = seconds
        self.echo(f"  {name:<28} {seconds:8.1f} s")


def in_background(function: Callable[..., T], *args: Any) -> Future[tuple[T, float]]:
    """`function(*args)` started on a daemon thread (so a job that fails meanwhile exits without waiting
    for it): a future of its result and its wall seconds, re-raising what it raised."""
    future: Future[tuple[T, float]] = Future()

    def run() -> None:
        start = time.perf_counter()
        try:
            value = function(*args)
        except BaseException as error:
            future.set_exception(error)
        else:
            future.set_result((value, time.perf_counter() - start))

    threading.Thread(target=run, name=getattr(function, "__name__", "background"), daemon=True).start()
    return future


def default_truth_path(data_dir: Path) -> Path | None:
    candidate = data_dir.with_name(f"{data_dir.name}.truth.npz")
    return candidate if candidate.is_file() else None


def _epoch_bar(progress: bool, total: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="epoch", disable=not progress, leave=False)


def fit_with_curve(model: Recommender, data: TrainingMatrices, progress: bool, description: str,
                   scorer: Callable[[Recommender], float] | None, metric: str) -> dict[str, list[float]]:
    """Fit `model`, recording the holdout metric (when a scorer is given) and seconds per epoch."""
    curves: dict[str, list[float]] = {"epoch_seconds": []}
    if scorer is not None:
        curves[metric] = []
    total = int(model.params().get("epochs", model.params().get("iterations", 1)))
    last = [time.perf_counter()]
    with _epoch_bar(progress, total, description) as bar:
        def callback(epoch: int, fitted: Recommender) -> None:
            now = time.perf_counter()
            curves["epoch_seconds"].append(now - last[0])
            if scorer is not None:
                curves[metric].append(scorer(fitted))
                bar.set_postfix({metric: f"{curves[metric][-1]:.4f}"})
            bar.update(1)
            last[0] = time.perf_counter()

        model.fit(data, callback=callback)
    return curves


def train(options: TrainOptions, echo: Callable[[str], None] = logger.info) -> TrainResult:
    """Run the whole training job; raises a ValueError subclass naming the problem on bad input.

    BLAS runs on one thread throughout: the LightFM epochs (OpenMP) and the response fit's thread
    already fill the cores, and a second BLAS thread only spun beside them (see `fit_response_models`);
    one setting for the whole job keeps every product's rounding the same from run to run."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _train(options, echo)


def response_settings(options: TrainOptions) -> ResponseFitConfig | None:
    """The response fit's settings for `options` (None: the defaults), checked before any data is read."""
    from training.response import ResponseFitConfig, ResponseFitError

    if options.decided_since is None:
        if options.control_share:
            raise ResponseFitError("--control-share says whose pushes the decision did not choose: give it "
                                   "with --decided-since, the time the decision began")
        return None
    if options.response_from is not None:
        raise ResponseFitError("--decided-since chooses the pushes the response models are refitted on, "
                               "--response-from keeps them unrefitted: give one of the two")
    return ResponseFitConfig(decided_since=options.decided_since, control_share=options.control_share)


def _train(options: TrainOptions, echo: Callable[[str], None]) -> TrainResult:
    config = options.config
    if options.model_out is not None:
        check_output_path(options.model_out, "--model-out", directory=True)
    kept_response = None
    response_config = response_settings(options)  # before the data, as the URI below
    if options.response_from is not None:  # before the data: a wrong URI fails at once
        from recsys.config import get_settings
        from training.response import kept_response_models

        kept_response = kept_response_models(options.response_from,
                                             options.tracking_uri or get_settings().tracking_uri)
    stages = Stages(echo)
    with stages.stage("load data"):
        dataset, train_sample = load_sample(options.data_dir, options.sample_users, config.seed,
                                      options.work_dir or Path(tempfile.gettempdir()), options.partition_size,
                                      options.cluster)
        # the population's end of data, not the sample's
        as_of = parse_as_of(options.as_of, train_sample or dataset)
    if train_sample is not None:
        echo(f"  trained on a sample of {train_sample.users:,} of {train_sample.population:,} cardholders "
             f"(seed {train_sample.seed}; RECSYS_TRAIN_SAMPLE_USERS)")
    truth_path = options.truth_path or default_truth_path(Path(options.data_dir))
    truth = None
    if truth_path is not None:
        from training.truth import check_truth_covers, load_truth

        truth = load_truth(truth_path)
        check_truth_covers(truth, dataset)
    # the push response models read only the dataset and the as-of time: they are fitted beside the ranking
    # model (their sparse products and array arithmetic release the GIL, as LightFM's epochs do) rather
    # than after it, and their lines are echoed when they are collected
    response_lines: list[str] = []
    response_fit = None
    if kept_response is None:
        from training.response import fit_for_training

        response_fit = in_background(fit_for_training, dataset, as_of, response_lines.append, response_config)
    tuning, selection = None, None
    if options.tune_minutes is not None:
        # before the holdout features: the chosen family weights shape them
        with stages.stage("tune"):
            tuning = tune(dataset, as_of - pd.Timedelta(days=config.holdout_days), config,
                          options.tune_minutes, echo=echo)
        config = tuning.config
        options = replace(options, config=config)
    elif config.model.kind == "lightfm_hybrid" and (config.appeal_choices or config.wide_choices
                                                     or config.wide_item_choices or config.choose_epochs):
        with stages.stage("choose on validation"):
            try:
                selection = choose_on_validation(dataset, as_of - pd.Timedelta(days=config.holdout_days),
                                                 config, echo=echo)
            except (HoldoutError, EmptyDataError) as error:
                echo(f"  configured epochs and weights kept (no validation window: {error})")
            else:
                config = selection.apply(config)
                options = replace(options, config=config)
    k, metric = config.k, config.metric

    with stages.stage("features (holdout split)"):
        holdout = make_holdout(dataset, as_of, config.holdout_days, config.features)
    echo(f"  holdout: {holdout.n_users:,} cardholders ({int(holdout.cold.sum()):,} without reads), "
         f"split at {holdout.split.isoformat()}")
    scorer = epoch_scorer(holdout, k, config.epoch_eval_max_users, config.seed)
    curve_metric = f"ndcg@{k}"
    split_models: dict[str, Recommender] = {}
    with stages.stage(f"fit {MODEL_NAME} (split)"):
        model = config.model.build()
        curves = fit_with_curve(model, holdout.train, options.progress, f"{MODEL_NAME} (split)", scorer,
                                curve_metric)
        split_models[MODEL_NAME] = model
    with stages.stage("fit baselines (split)"):
        for name, spec in config.baselines.items():
            split_models[name] = spec.build().fit(holdout.train)
    results: dict[str, dict[str, float]] = {}
    recommended: dict[str, np.ndarray] = {}
    with stages.stage("evaluate"):
        for name, fitted in split_models.items():
            recommended[name] = recommend_holdout(fitted, holdout, k)
            results[name] = evaluate(fitted, holdout, k, config.auc_max_users, config.seed, metric,
                                     recommended[name])
        comparisons = compare(recommended, results, holdout, metric, k, config.seed)
    lift = lifts(results, metric)

    final_model, final_fallback, final_data, builder = model, split_models.get(POPULARITY), holdout.train, \
        holdout.builder
    if config.refit:
        with stages.stage("features (as-of)"):
            final_data, builder = build_training_matrices(dataset, as_of, config.features)
        with stages.stage(f"refit {MODEL_NAME} (as-of)"):
            final_model = config.model.build()
            refit_curves = fit_with_curve(final_model, final_data, options.progress, f"{MODEL_NAME} (refit)",
                                          None, curve_metric)
            curves["refit_epoch_seconds"] = refit_curves["epoch_seconds"]
            final_fallback = _popularity_spec(config).build().fit(final_data)

    truth_rates: dict[str, float] = {}
    scores_sample: dict[str, np.ndarray] = {}
    with stages.stage("score everyone at as-of"):
        eligibility = build_eligibility(item_metadata(dataset.content, final_data.items), final_data.items,
                                        as_of, card_tiers_of(dataset, final_data.users.ids),
                                        seen_pairs(dataset, as_of, final_data.users.ids, final_data.items))
        everyone = np.arange(final_data.n_users)
        top1 = {}
        for name, fitted in ((MODEL_NAME, final_model), (POPULARITY, final_fallback)):
            if fitted is None:
                continue
            factors = fitted.user_factors(everyone, final_data.user_features)
            indices, scores = top_k(factors, fitted.item_factors(), 1, eligibility)
            top1[name] = indices[:, 0]
            if name == MODEL_NAME:
                scores_sample["top-1 score"] = scores[:, 0]
                sample = everyone[: min(2000, everyone.size)]
                scores_sample["all scores (sample)"] = (factors[sample] @ fitted.item_factors().T).ravel()
        if truth is not None:
            from training.truth import aligned_open_prob, expected_open_rates

            open_prob = aligned_open_prob(truth, final_data.users, final_data.items)
            truth_rates = expected_open_rates(open_prob, eligibility, top1)
            base = truth_rates.get(f"open_rate_top1.{POPULARITY}")
            if base:
                truth_rates["open_rate_top1.lift_vs_popularity"] = (
                    truth_rates[f"open_rate_top1.{MODEL_NAME}"] / base)

    if response_fit is None:
        response, response_report = kept_response, None
        echo(f"  response models kept from {options.response_from} (fitted to "
             f"{kept_response.info.get('fitted_to', 'an unrecorded time')}), not refitted")
    else:
        with stages.stage("wait for response models"):
            (response, response_report), seconds = response_fit.result()
        stages.record(RESPONSE_STAGE, seconds)
        for line in response_lines:
            echo(line)

    result = TrainResult(as_of=as_of, split=holdout.split, results=results, truth=truth_rates, lift=lift,
                         timings=stages.timings, curves=curves, comparisons=comparisons,
                         response_report=response_report, tuning=tuning, selection=selection)
    result.summary = {
        "data_dir": str(options.data_dir), "as_of": as_of.isoformat(), "split": holdout.split.isoformat(),
        "holdout_users": holdout.n_users, "holdout_cold_users": int(holdout.cold.sum()),
        "n_users": final_data.n_users, "n_items": final_data.n_items,
        "n_interactions": int(final_data.interactions.nnz), "metric": metric, "k": k,
        "truth_file": None if truth_path is None else str(truth_path),
        "train_sample": None if train_sample is None else train_sample.to_dict(),
    }
    if tuning is not None:
        result.summary["tuning"] = tuning.summary()
    if selection is not None:
        result.summary["selection"] = selection.summary()
    bundle = ModelBundle(
        model=final_model, users=final_data.users, items=final_data.items, feature_state=builder.to_dict(),
        item_meta=item_metadata(dataset.content, final_data.items), user_segments=final_data.user_segments,
        as_of=as_of, metrics={**prefixed(results[MODEL_NAME]), **truth_rates},
        params=config.to_dict() | ({} if tuning is None else {"tuning": tuning.summary()})
        | ({} if selection is None else {"selection": selection.summary()}),
        user_features=final_data.user_features, response=response,
    )
    staging = Path(tempfile.mkdtemp(prefix="qianmian-train-"))
    try:
        with stages.stage("save bundle"):
            bundle_dir = bundle.save(staging / "bundle")
        if options.model_out is not None:
            result.bundle_path = bundle.save(options.model_out)
        # last, so a failure anywhere before leaves no run claiming a registered model
        if options.track:
            with stages.stage("log to MLflow"):
                _track(options, result, bundle_dir, staging, scores_sample)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _popularity_spec(config: TrainConfig):
    from training.config import ModelSpec

    return config.baselines.get("popularity_segment") or ModelSpec("popularity", {"by_segment": True})


def prefixed(metrics: dict[str, float]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items() if value == value}


def lifts(results: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    """The model's chosen metric divided by each baseline's (a ratio; 1.0 = no better)."""
    ours = results[MODEL_NAME].get(metric)
    out = {}
    for name, values in results.items():
        if name == MODEL_NAME or ours is None:
            continue
        theirs = values.get(metric)
        if theirs:
            out[f"lift.{metric}.vs_{name}"] = ours / theirs
    return out


@dataclass(frozen=True)
class Comparison:
    """The candidate's metric minus a baseline's on the same holdout cardholders, with the 95% paired
    bootstrap interval of that difference (low = high = difference for a metric not defined per user)."""

    baseline: float
    difference: float
    low: float
    high: float
    users: int

    @property
    def beaten(self) -> bool:
        return bool(self.low > 0)

    def describe(self, name: str) -> str:
        if self.users and self.low != self.high:
            return (f"{name} ({self.baseline:.4f}; difference {self.difference:+.4f}, 95% paired-bootstrap "
                    f"interval [{self.low:+.4f}, {self.high:+.4f}] over {self.users:,} holdout cardholders)")
        return f"{name} ({self.baseline:.4f}; difference {self.difference:+.4f})"


def compare(recommended: dict[str, np.ndarray], results: dict[str, dict[str, float]], holdout: Holdout,
            metric: str, k: int, seed: int) -> dict[str, Comparison]:
    """The model against each baseline on `metric`: a paired bootstrap over the evaluated cardholders
    when the metric is defined per cardholder, the plain difference otherwise (auc, coverage)."""
    name = metric.split("@")[0]
    out: dict[str, Comparison] = {}
    ours = results[MODEL_NAME].get(metric, float("nan"))
    for baseline, values in results.items():
        if baseline == MODEL_NAME:
            continue
        theirs = values.get(metric, float("nan"))
        if name in ranking_metrics.PER_USER:
            difference = (ranking_metrics.per_user(name, recommended[MODEL_NAME], holdout.relevant, k)
                          - ranking_metrics.per_user(name, recommended[baseline], holdout.relevant, k))
            mean, low, high = ranking_metrics.bootstrap_interval(difference, seed=seed)
            out[baseline] = Comparison(theirs, mean, low, high, int((~np.isnan(difference)).sum()))
        else:
            out[baseline] = Comparison(theirs, ours - theirs, ours - theirs, ours - theirs, 0)
    return out


def champion_decision(candidate: float, baselines: dict[str, Comparison], champion_value: float | None,
                      champion_version: str | None, metric: str,
                      candidate_interval: tuple[float, float] | None = None) -> tuple[bool, str]:
    """Whether the candidate becomes champion, and why (or why not), in one sentence.

    A baseline is beaten only when the whole 95% paired-bootstrap interval of the difference is above
    0; the champion is replaced only when its logged value lies below the candidate's own interval
    (`candidate_interval`, the bootstrap interval of the candidate's mean), so noise moves nothing.
    """
    not_beaten = [comparison.describe(name) for name, comparison in baselines.items()
                  if not comparison.beaten]
    if not_beaten:
        return False, (f"{metric} {candidate:.4f} is not above the baseline(s) {'; '.join(not_beaten)}: "
                       "champion unchanged")
    if champion_version is None:
        return True, (f"{metric} {candidate:.4f} beats every baseline beyond noise and there is no "
                      "champion yet")
    if champion_value is None:
        return True, (f"{metric} {candidate:.4f} beats every baseline beyond noise; champion "
                      f"v{champion_version} has no logged {metric}, so it is replaced")
    low, high = candidate_interval if candidate_interval is not None else (candidate, candidate)
    bounds = f"95% bootstrap interval [{low:.4f}, {high:.4f}]"
    if champion_value < low:
        return True, (f"{metric} {candidate:.4f} ({bounds}) beats every baseline and champion "
                      f"v{champion_version} ({champion_value:.4f}) beyond noise")
    return False, (f"{metric} {candidate:.4f} ({bounds}) is not above champion v{champion_version} "
                   f"({champion_value:.4f}) beyond noise: champion unchanged")


def _track(options: TrainOptions, result: TrainResult, bundle_dir: Path, staging: Path,
           scores: dict[str, np.ndarray]) -> None:
    from recsys.config import get_settings
    from training.report import write_report
    from training.tracking import Tracker, run_name

    settings = get_settings()
    config = options.config
    tracker = Tracker(options.tracking_uri or settings.tracking_uri,
                      options.artifact_root or settings.artifact_root, options.experiment)
    metric = config.metric
    candidate = result.results[MODEL_NAME].get(metric, float("nan"))
    report_dir = write_report(staging / "report", result.summary, result.results, result.curves, scores,
                              config.k, f"ndcg@{config.k}")
    with tracker.run(run_name=run_name(options.experiment, options.data_dir, result.as_of,
                                       pd.Timestamp.now(tz="UTC")),
                     tags={"as_of": result.as_of.isoformat(), "data_dir": str(options.data_dir)}) as run:
        run.log_params(flatten(config.to_dict()))
        run.log_params({"as_of": result.as_of.isoformat(), "split": result.split.isoformat(),
                        "data_dir": str(options.data_dir)})
        if result.summary.get("train_sample"):
            run.log_params(flatten({"train_sample": result.summary["train_sample"]}))
        if options.response_from is not None:
            run.log_params({"response_from": options.response_from})
        if options.decided_since is not None:
            run.log_params({"decided_since": options.decided_since.isoformat(),
                            "control_share": options.control_share})
        run.log_metrics(result.results[MODEL_NAME])
        for name, values in result.results.items():
            run.log_metrics({f"{name}.{key}": value for key, value in values.items()})
        run.log_metrics(result.lift)
        for name, comparison in result.comparisons.items():
            run.log_metrics({f"gate.vs_{name}.difference": comparison.difference,
                             f"gate.vs_{name}.low": comparison.low, f"gate.vs_{name}.high": comparison.high})
        run.log_metrics(result.truth)
        run.log_metrics({f"time.{key.replace(' ', '_').replace('(', '').replace(')', '')}": value
                         for key, value in result.timings.items()})
        for name, values in result.curves.items():
            for step, value in enumerate(values, start=1):
                run.log_metrics({f"epoch.{name}": value}, step=step)
        run.log_artifacts(report_dir, "report")
        if result.response_report is not None:
            from training.response import log_report

            log_report(run, result.response_report)
        if result.selection is not None:
            run.log_dict(result.selection.summary(), "selection.json")
            run.log_metrics({f"selection.{key}": value for key, value in result.selection.objectives.items()})
            for step, value in enumerate(result.selection.epoch_objectives, start=1):
                run.log_metrics({"selection.objective_by_epoch": value}, step=step)
        if result.tuning is not None:
            run.log_dict(result.tuning.summary(), "tuning.json")
            for trial in result.tuning.trials:
                run.log_child_run(f"trial-{trial.number:03d}", trial.params,
                                  {"objective": trial.objective, "seconds": trial.seconds, **trial.scores})
        result.model_uri = run.log_bundle(bundle_dir)
        result.run_id = run.run_id
    if not options.register:
        result.decision = "not registered (--no-register)"
        return
    name = options.registered_model_name
    champion = tracker.champion(name, metric)
    interval = overall_interval(result, metric)
    moved, reason = champion_decision(candidate, result.comparisons,
                                      None if champion is None else champion.value,
                                      None if champion is None else champion.version, metric, interval)
    result.version = tracker.register(result.model_uri, name)
    result.registered_name = name
    if moved:
        tracker.set_champion(name, result.version)
    result.champion_moved = moved
    result.decision = reason


def overall_interval(result: TrainResult, metric: str) -> tuple[float, float] | None:
    """The bootstrap interval of the model's metric over all evaluated cardholders, when reported."""
    values = result.results[MODEL_NAME]
    low, high = values.get(f"{metric}.low"), values.get(f"{metric}.high")
    return None if low is None or high is None else (low, high)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


__all__ = ["EmptyDataError", "Holdout", "TrainOptions", "TrainResult", "train", "Dataset"]
