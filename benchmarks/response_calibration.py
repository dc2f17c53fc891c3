"""Calibration of the push response model on a time split, beside its baselines from the same run.

For each world (a generated one, and the shared independent world when present) the response model is
fitted with `training.response.fit_response_models` (holdout = the last --holdout-days, Platt map from the
validation slice before it) and scored on the holdout pushes: log-loss, Brier, ECE (10 equal-count bins)
and AUC for opens and mutes. Baseline in the same run, on the same pushes: the training base rate as a
constant. (The simulator answers real data with this same model since the segment-level fit was dropped.)
With --ranking-score a LightFM ranking model fitted at the validation start supplies each pair's score.

The hidden truths only score: the generated world's response model (correlation of fitted and true
P(open)), the independent world's `p` (its true open chance per pair) and `evening` (whether a
cardholder prefers evening pushes) against each cardholder's learned better hours.

    .venv/bin/python benchmarks/response_calibration.py
    .venv/bin/python benchmarks/response_calibration.py --ranking-score --skip-synth
    .venv/bin/python benchmarks/response_calibration.py --user-hour-penalty 4    # the former hour prior
    .venv/bin/python benchmarks/response_calibration.py --speed DATA_DIR    # fit time beside the old fit
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
INDEPENDENT = ROOT.parent / "shared" / "worlds" / "independent"
MORNING, EVENING = (9, 12), (19, 20)  # the send hours of the independent world's log


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def split_scorer(dataset, as_of: pd.Timestamp, components: int, epochs: int):
    """A LightFM hybrid fitted on spend, clicks and reads known at `as_of`, as a response-model scorer."""
    from features.bundle_inputs import item_metadata
    from features.pipeline import build_training_matrices
    from features.timecut import known_at
    from recsys.bundle import ModelBundle
    from recsys.models.lightfm_hybrid import LightFMHybrid
    from training.response import bundle_scorer

    known = known_at(dataset, as_of)
    # without the push log: a model that learned from the very opens it scores would leak them
    known = replace(known, push_log=known.push_log.iloc[:0])
    matrices, builder = build_training_matrices(known, as_of)
    model = LightFMHybrid(no_components=components, epochs=epochs, num_threads=1, random_state=5)
    model.fit(matrices)
    bundle = ModelBundle(model=model, users=matrices.users, items=matrices.items,
                         feature_state=builder.to_dict(),
                         item_meta=item_metadata(dataset.content, matrices.items),
                         user_segments=matrices.user_segments, as_of=as_of)
    return bundle_scorer(bundle, known, as_of)


def evaluate(name: str, dataset, as_of: pd.Timestamp, holdout_days: int, ranking_score: bool,
             components: int, epochs: int, user_hour: float | None = None) -> dict:
    from training.response import DEFAULT_PENALTIES, ResponseFitConfig, fit_response_models, marketing_pushes

    penalties = {target: dict(weights) for target, weights in DEFAULT_PENALTIES.items()}
    if user_hour is not None:
        penalties["open"]["user_hour"] = user_hour
    # a given weight is fixed; otherwise the fit chooses it on its validation slice
    config = ResponseFitConfig(holdout_days=holdout_days, refit=False, penalties=penalties,
                               **({"user_hour_grid": ()} if user_hour is not None else {}))
    holdout_from = as_of - pd.Timedelta(days=holdout_days)
    scorer = None
    if ranking_score:
        start = time.perf_counter()
        scorer = split_scorer(dataset, holdout_from - pd.Timedelta(days=config.validation_days), components,
                              epochs)
        log(f"{name}: ranking model for the scores fitted in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    model, report = fit_response_models(dataset, as_of, config, scorer)
    log(f"{name}: response model fitted and evaluated in {time.perf_counter() - start:.0f} s "
        f"({report.pushes})")
    pushes = marketing_pushes(dataset, as_of, config.default_timezone)
    holdout = pushes.loc[(pushes["sent_ts"] > holdout_from).to_numpy()].reset_index(drop=True)
    rows = {
        "constant base rate": {t: report.holdout[t] for t in ("open", "mute")},
        "response model, raw": report.holdout_raw,
        "response model, calibrated": report.holdout,
    }
    scores = None
    if scorer is not None:
        scores = scorer(holdout["user_id"].to_numpy(), holdout["content_id"].to_numpy())
    users, items = model.user_rows(holdout["user_id"]), model.item_rows(holdout["content_id"])
    fitted = model.open_probability(users, items, holdout["hour"].to_numpy(), holdout["recent"].to_numpy(),
                                    scores)
    return {"name": name, "rows": rows, "model": model, "holdout": holdout, "fitted_open": fitted,
            "report": report}


def print_table(result: dict) -> None:
    print(f"\n{result['name']}: holdout pushes {result['report'].pushes['holdout']:,}, "
          f"open rate {result['rows']['response model, calibrated']['open'].observed_rate:.4f}, "
          f"mute rate {result['rows']['response model, calibrated']['mute'].observed_rate:.4f}")
    print(f"| {'model':<32} | target | log-loss | Brier    | ECE    | noise  | AUC   | mean p |")
    print(f"|{'-' * 34}|--------|----------|----------|--------|--------|-------|--------|")
    for label, figures in result["rows"].items():
        for target in ("open", "mute"):
            c = figures[target]
            if label == "constant base rate":
                values = (c.base_log_loss, c.base_brier, abs(c.base_rate - c.observed_rate), 0.0, 0.5,
                          c.base_rate)
            else:
                values = (c.log_loss, c.brier, c.ece, c.ece_noise, c.auc, c.mean_predicted)
            print(f"| {label:<32} | {target:<6} | {values[0]:.5f}  | {values[1]:.6f} | {values[2]:.4f} | "
                  f"{values[3]:.4f} | {values[4]:.3f} | {values[5]:.4f} |")
    curve = result["rows"]["response model, calibrated"]["open"].curve
    print("reliability (open, calibrated): " + ", ".join(
        f"{b.mean_predicted:.3f}->{b.observed_rate:.3f}" for b in curve))


def what_carries(result: dict) -> None:
    """Which parts of P(open) carry from the training pushes to the holdout: whether the holdout's items
    were pushed before (an item's own term), a cardholder's own earlier open rate alone (the engagement
    term), and the model's log-loss split into level and ranking: the constant and the model each moved
    to the holdout's own open rate (a diagnosis that reads the holdout's labels, never a fit)."""
    from scipy.optimize import brentq
    from scipy.special import expit, logit

    from training.calibration import auc, log_loss

    holdout, before = result["holdout"], result["all_pushes"]
    opened = holdout["opened_ts"].notna().to_numpy()
    seen = holdout["content_id"].isin(set(before["content_id"])).to_numpy()
    rate = float(opened.mean())
    answers = (before.assign(opened=before["opened_ts"].notna()).groupby("user_id")["opened"]
               .agg(["sum", "size"]))
    base = answers["sum"].sum() / answers["size"].sum()
    own = ((answers["sum"] + 5 * base) / (answers["size"] + 5)).reindex(holdout["user_id"]).fillna(base)
    fitted = logit(np.clip(result["fitted_open"], 1e-9, 1 - 1e-9))
    shift = brentq(lambda s: float(expit(fitted + s).mean()) - rate, -20, 20)
    print(f"what carries to the holdout: {holdout['content_id'].nunique()} item(s), {seen.mean():.1%} of its "
          f"pushes of an item pushed before; a cardholder's own earlier open rate (shrunk, 5 pushes) "
          f"alone: AUC {auc(own.to_numpy(), opened):.3f}; at the holdout's own open rate {rate:.4f}: "
          f"constant log-loss {log_loss(np.full(len(opened), rate), opened):.5f}, the model moved to it "
          f"{log_loss(expit(fitted + shift), opened):.5f} (logit shift {shift:+.2f})")


def synth_truth(result: dict, truth) -> None:
    from training.response import segment_labels

    holdout = result["holdout"]
    users = truth.user_index(holdout["user_id"].to_numpy().astype(str))
    items = truth.content_index(holdout["content_id"].to_numpy().astype(str))
    hours = holdout["hour"].to_numpy() if truth.user_peak_hour is not None else None
    true_open = truth.response_model().open_probability(users, items, holdout["recent"].to_numpy(), hours)
    fitted = result["fitted_open"]
    print(f"truth: corr(fitted, true P(open)) on holdout pushes {np.corrcoef(fitted, true_open)[0, 1]:.3f}; "
          f"mean fitted {fitted.mean():.4f} vs true {true_open.mean():.4f}")
    if truth.user_peak_hour is None:
        return
    model, ids = result["model"], truth.user_ids.astype(str)
    pushes = result["all_pushes"]
    opened = pushes.loc[pushes["opened_ts"].notna(), "user_id"]
    opens = opened.value_counts().reindex(ids).fillna(0).to_numpy()
    labels = segment_labels(result["dataset"], result["report"].as_of, ids.astype(object))
    picks = {
        "a random sent hour": np.random.default_rng(0).choice(model.send_hours, len(ids)),
        "segment only": model.best_hours(model.user_rows(np.array([f"?{i}" for i in ids]), labels), k=1),
        "response model best_hours(k=1)": model.best_hours(model.user_rows(ids), k=1),
    }
    print(f"best hour within 3 h of the true peak hour (sent hours {list(model.send_hours)}):")
    print("| hour from | all cardholders | 3+ opens in training |")
    print("|---|---|---|")
    for label, hours in picks.items():
        top = np.asarray(hours).reshape(len(ids), -1)[:, 0]
        distance = np.abs(top - truth.user_peak_hour)
        near = np.minimum(distance, 24 - distance) <= 3
        print(f"| {label} | {near.mean():.1%} | {near[opens >= 3].mean():.1%} ({int((opens >= 3).sum())}) |")


def independent_truth(result: dict, hidden: Path) -> None:
    from training.calibration import auc

    truth = np.load(hidden, allow_pickle=True)  # the world's own file keeps ids as object arrays
    model, holdout = result["model"], result["holdout"]
    users = pd.Index(truth["users"].astype(str)).get_indexer(holdout["user_id"].to_numpy().astype(str))
    items = pd.Index(truth["items"].astype(str)).get_indexer(holdout["content_id"].to_numpy().astype(str))
    true_p = truth["p"][users, items]
    fitted = result["fitted_open"]
    print(f"truth: corr(fitted P(open), true p) on holdout pushes {np.corrcoef(fitted, true_p)[0, 1]:.3f}")
    ids = truth["users"].astype(str)
    evening = truth["evening"].astype(bool)
    from training.response import segment_labels

    labels = segment_labels(result["dataset"], result["report"].as_of, ids.astype(object))
    personal = model.hour_effects(model.user_rows(ids))
    segment_only = model.hour_effects(model.user_rows(np.array([f"?{i}" for i in ids]), labels))
    pushes = result["all_pushes"]
    opened = pushes["opened_ts"].notna().to_numpy()
    is_evening = pushes["hour"].isin(EVENING).to_numpy()
    frame = pd.DataFrame({"user": pushes["user_id"], "eve": is_evening, "open": opened})
    rate = frame.groupby(["user", "eve"])["open"].agg(["sum", "size"]).unstack(fill_value=0)
    raw = ((rate[("sum", True)] + 0.5) / (rate[("size", True)] + 1)
           - (rate[("sum", False)] + 0.5) / (rate[("size", False)] + 1)).reindex(ids).fillna(0).to_numpy()
    print(f"better hours vs the truth's `evening` ({evening.mean():.1%} of cardholders), "
          f"evening preference = best of {EVENING} minus best of {MORNING}:")
    openers = frame.loc[frame["open"], "user"].value_counts().reindex(ids).fillna(0).to_numpy() >= 1
    print("| preference from | AUC vs evening | AUC, cardholders with an open | evening preferred: "
          "evening / other cardholders |")
    print("|---|---|---|---|")
    for label, effects in (("per-cardholder open rates (no shrinkage)", None), ("segment only", segment_only),
                           ("response model (cardholder + segment)", personal)):
        if effects is None:
            score = raw
        else:
            score = effects[:, list(EVENING)].max(axis=1) - effects[:, list(MORNING)].max(axis=1)
        top_evening = score > 0
        probability = 1 / (1 + np.exp(-score))
        print(f"| {label} | {auc(probability, evening):.3f} | "
              f"{auc(probability[openers], evening[openers]):.3f} ({int(openers.sum())}) | "
              f"{top_evening[evening].mean():.1%} / {top_evening[~evening].mean():.1%} |")
    best = model.best_hours(model.user_rows(ids), k=1, allowed=[*MORNING, *EVENING])
    top = np.array([b[0] for b in best])
    print(f"best_hours(k=1, allowed={[*MORNING, *EVENING]}): evening hour for "
          f"{np.isin(top, EVENING)[evening].mean():.1%} of evening cardholders, "
          f"{np.isin(top, EVENING)[~evening].mean():.1%} of the others")


def speed(data: Path, refit: bool) -> None:
    """The whole fit as `recsys train` runs it (three fits when `refit`) on an existing world: the
    previous fit (every push, each fit from zero) first as the same-run baseline, then the default."""
    from features.loader import load_dataset
    from training.response import ResponseFitConfig, fit_response_models

    dataset = load_dataset(data)
    as_of = dataset.time_range()[1]
    configs = {"previous settings: every push, cold starts, Platt intercept from validation":
               ResponseFitConfig(refit=refit, negative_share={"open": 1.0, "mute": 1.0}, warm_start=False,
                                 level_days=0),
               "default (sampled non-events, warm starts)": ResponseFitConfig(refit=refit)}
    rows = []
    for label, config in configs.items():
        start, cpu = time.perf_counter(), time.process_time()
        _, report = fit_response_models(dataset, as_of, config)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        log(f"{label}: {seconds:.1f} s wall, {cpu:.1f} s CPU "
            f"{({k: round(v, 1) for k, v in report.timings.items()})}")
        rows.append((label, seconds, cpu, report))
    print(f"\n{data}: {rows[0][3].pushes} marketing pushes, as of {as_of.isoformat()}, refit {refit}")
    print("| fit | wall s (CPU s) | target | log-loss (base) | Brier (base) | ECE (noise) | AUC "
          "| mean p / observed |")
    print("|---|---|---|---|---|---|---|---|")
    for label, seconds, cpu, report in rows:
        for target in ("open", "mute"):
            c = report.holdout[target]
            print(f"| {label} | {seconds:.1f} ({cpu:.1f}) | {target} | "
                  f"{c.log_loss:.5f} ({c.base_log_loss:.5f}) | {c.brier:.6f} ({c.base_brier:.6f}) | "
                  f"{c.ece:.4f} ({c.ece_noise:.4f}) | {c.auc:.3f} | "
                  f"{c.mean_predicted:.4f} / {c.observed_rate:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench-response")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--hour-preference", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout-days", type=int, default=14)
    parser.add_argument("--independent", type=Path, default=INDEPENDENT)
    parser.add_argument("--independent-as-of", default="2026-09-01")
    parser.add_argument("--ranking-score", action="store_true")
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--skip-synth", action="store_true")
    parser.add_argument("--user-hour-penalty", type=float, default=None,
                        help="a fixed L2 weight of the open model's per-cardholder daily wave "
                             "(default: chosen on the validation slice)")
    parser.add_argument("--speed", type=Path, default=None, metavar="DATA_DIR",
                        help="time the fit on an existing world (e.g. 100k cardholders from `recsys synth`) "
                             "beside the previous fit, same run, and exit")
    parser.add_argument("--no-refit", action="store_true", help="with --speed: skip the published refit")
    args = parser.parse_args()
    if args.speed is not None:
        speed(args.speed, not args.no_refit)
        return

    from features.loader import load_dataset
    from training.response import marketing_pushes

    if not args.skip_synth:
        from worlds import WorldConfig, WorldTruth, generate_world
        from worlds.scenario import Scenario

        out = args.work_dir / f"world-{args.users}-{args.days}-{args.seed}-{args.hour_preference}"
        truth_path = out.with_name(f"{out.name}.truth.npz")
        if not truth_path.is_file():
            generate_world(WorldConfig(users=args.users, items=120, days=args.days, seed=args.seed,
                                       scenario=Scenario(hour_preference=args.hour_preference)), out)
        dataset = load_dataset(out)
        truth = WorldTruth.load(truth_path)
        result = evaluate(f"generated world ({args.users:,} cardholders, {args.days} days, seed {args.seed}, "
                          f"hour preference {args.hour_preference})", dataset, pd.Timestamp(truth.as_of),
                          args.holdout_days, args.ranking_score, args.components, args.epochs,
                          args.user_hour_penalty)
        result["dataset"] = dataset
        result["all_pushes"] = marketing_pushes(dataset, result["report"].holdout_from, "Asia/Shanghai")
        print_table(result)
        what_carries(result)
        synth_truth(result, truth)
    if args.independent.is_dir():
        dataset = load_dataset(args.independent)
        as_of = pd.Timestamp(args.independent_as_of, tz="UTC")
        result = evaluate("independent world", dataset, as_of, args.holdout_days, args.ranking_score,
                          args.components, args.epochs, args.user_hour_penalty)
        result["dataset"] = dataset
        result["all_pushes"] = marketing_pushes(dataset, as_of - pd.Timedelta(days=args.holdout_days),
                                                "Asia/Shanghai")
        print_table(result)
        what_carries(result)
        hidden = args.independent.with_name(f"{args.independent.name}.hidden.npz")
        if hidden.is_file():
            independent_truth(result, hidden)
    else:
        log(f"{args.independent} is absent: the independent world is skipped")


if __name__ == "__main__":
    main()
