"""Validation figures beside the truth, on the validation fit itself: which appeal x wide cell each picks.

For each world of `benchmarks/quality.py` (the shared independent one judged by its hidden open
probabilities), it fits the engine on the validation window exactly as `recsys train` does
(`training/selection.py`: a sample of at most 20,000 cardholders at `split - holdout_days`, epochs
chosen by the `--tune` objective), then scores every epoch and every item appeal x wide cell of that fit
by figures computed from the window only, and by the truth: the share of the popularity-to-oracle gap
in true top-1 open probability it closes at the validation split. The truth's open probabilities do
not change over time, so the same fit is judged both ways and fit noise cancels.

- `objective`: the `--tune` objective (readers' nDCG gain over popularity and non-readers' pooled
  push-open Gini); `readers_term` and `non_readers_gini` its two terms.
- `hit1`: the top-1 hit rate (share of evaluated cardholders whose first eligible item is one they read
  or opened in the window); `readers_hit1`; `hit1_balanced` (readers' and non-readers' rates
  averaged); `hit5` (a hit anywhere in the top 5).
- `push_gini_all`: pooled push-open Gini of the model's scores over every cardholder's marketing pushes;
  `objective_all_pushes` the objective with it in place of the non-readers' Gini.
- `standing_gini`: the same Gini on the pushed item's standing among the items its cardholder could be
  offered (1 - (rank - 1) / offerable), which no per-cardholder scale of the scores moves.
- `push_rank_gain`: over every marketing push of the window, the DCG gain 1 / log2(1 + rank) of its
  item's rank among the items its cardholder could be offered; the mean over opened pushes of that gain
  minus the mean gain of all pushes the same cardholder was sent (campaign targeting cancels).
- `both`, `hit1+standing`, `objective+standing`: sums of figures each standardised over the cells.

Per world it prints every cell, then the truth at each figure's best cell, at "FIGURE 1se" (the lightest
cell, lowest wide weight then appeal, within one bootstrap standard error of the figure's best, 200
Poisson replicates of the cardholders) and "FIGURE wins" (the cell best in most replicates), at the
engine's rule (`best_pair` on the objective), at "appeal within noise" (the objective's wide weight with
the lowest appeal there within one bootstrap standard error of the best: the engine's rule until the
push counts left young opened pushes out), the best cell, and the Spearman correlation of each figure
with the truth over the cells. Only the engine's rule is what `recsys train` uses; the others were
measured and not kept (README, "Chosen on the validation window").

With `--epoch-rules` it instead scores every epoch of the fit at every appeal choice (wide 0) by the
objective, its readers' term alone and the truth, and for each way of choosing the epochs in
`EPOCH_RULES` (the curve at the configured, the smallest or the best appeal; by the objective or by its
readers' term) prints the epochs chosen and the truth at the objective's appeal x wide cell there.

    .venv/bin/python benchmarks/validation_figures.py --users 5000 --seed 11 --out cells11.pkl
    .venv/bin/python benchmarks/validation_figures.py --report cells11.pkl --report cells12.pkl
    .venv/bin/python benchmarks/validation_figures.py --users 5000 --no-shared --epoch-rules
    .venv/bin/python benchmarks/validation_figures.py --data /tmp/world100k   # its .truth.npz beside it
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from quality import world_arguments, worlds  # noqa: E402

REPLICATES = 200
BOOTSTRAPPED = ("boot objective", "boot objective_all_pushes", "boot hit1", "boot standing_gini")
# figures summed after standardising each over a world's cells (per bootstrap replicate too)
MIXES = {"hit1+standing": ("hit1", "standing_gini"), "objective+standing": ("objective", "standing_gini")}


@dataclass(frozen=True)
class HiddenTruth:
    """The shared independent world's hidden open probabilities in the shape `aligned_open_prob` reads."""

    user_ids: np.ndarray
    content_ids: np.ndarray
    open_prob: np.ndarray
    as_of: object

    def user_index(self, ids) -> np.ndarray:
        return pd_index(self.user_ids).get_indexer(np.asarray(ids).astype(str))

    def content_index(self, ids) -> np.ndarray:
        return pd_index(self.content_ids).get_indexer(np.asarray(ids).astype(str))


def pd_index(ids: np.ndarray):
    import pandas as pd

    return pd.Index(np.asarray(ids).astype(str))


def shared_truth(world: Path) -> HiddenTruth:
    import json

    import pandas as pd

    hidden = np.load(world.with_name(f"{world.name}.hidden.npz"), allow_pickle=True)
    meta = json.loads(world.with_name(f"{world.name}.meta.json").read_text())
    return HiddenTruth(hidden["users"].astype(str), hidden["items"].astype(str), hidden["p"],
                       pd.Timestamp(meta["as_of"], tz="UTC"))


def pushed_ranks(model, validation, eligibility) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per marketing push of the window: the rank of its item among the items its cardholder could be
    offered (1 = first), how many those were, and the cardholder's position in `np.unique` of the rows."""
    from training.evaluate import eligible_mask

    pushes = validation.pushes
    users, inverse = np.unique(pushes.rows, return_inverse=True)
    scores = model.user_factors(users, validation.train.user_features[users]) @ model.item_factors().T
    eligible = eligible_mask(eligibility.subset(users), scores.shape[1])
    scores[~eligible] = -np.inf
    pushed = scores[inverse, pushes.items]
    rank = 1 + (scores[inverse] > pushed[:, None]).sum(axis=1)
    return rank, eligible.sum(axis=1)[inverse], inverse


def push_rank_gain(model, validation, eligibility) -> float:
    """See the module docstring; `eligibility` covers every training row of `validation`."""
    rank, _, inverse = pushed_ranks(model, validation, eligibility)
    gains = 1.0 / np.log2(1.0 + rank)
    mean_gain = np.bincount(inverse, weights=gains) / np.bincount(inverse)
    opened = validation.pushes.opened
    return float(np.mean(gains[opened] - mean_gain[inverse[opened]])) if opened.any() else float("nan")


EPOCH_RULES = {
    # name: (appeal the curve is scored at: "configured", "smallest" or "best"; the figure)
    "configured appeal, objective": ("configured", "objective"),
    "smallest appeal, objective": ("smallest", "objective"),
    "best appeal, objective": ("best", "objective"),
    "configured appeal, readers' term": ("configured", "readers_term"),
    "smallest appeal, readers' term": ("smallest", "readers_term"),
    "best appeal, readers' term": ("best", "readers_term"),
}


def epoch_rule_rows(name: str, model, states: list, train, config, judged) -> list[dict]:
    """Every epoch scored at every appeal choice (wide 0), each rule's epoch, and the objective's
    appeal x wide cell at that epoch judged by the truth."""
    import pandas as pd

    from training.selection import fewest_good_epochs

    configured = float(config.model.params.get("item_appeal_weight", 1.0))
    appeals = sorted(set(config.appeal_choices) | {configured})
    curve = []
    for epoch, state in enumerate(states, start=1):
        model.rewind(state, epoch, train)
        model.set_wide(0.0, train)
        for appeal in appeals:
            model.set_item_appeal(appeal, train)
            curve.append(judged(model, epoch=epoch, appeal=appeal, wide=0.0))
    frame = pd.DataFrame(curve)
    print(f"\n{name}: every epoch at wide 0")
    print(frame.pivot(index="epoch", columns="appeal", values=["objective", "readers_term", "truth"])
          .round(3).to_string(), flush=True)
    cells_at: dict[int, list[dict]] = {}
    out = []
    for rule, (where, figure) in EPOCH_RULES.items():
        if where == "best":
            values = frame.groupby("epoch")[figure].max().tolist()
        else:
            appeal = configured if where == "configured" else min(config.appeal_choices)
            values = frame.loc[frame["appeal"] == appeal, figure].tolist()
        epochs = fewest_good_epochs(values)
        if epochs not in cells_at:
            model.rewind(states[epochs - 1], epochs, train)
            cells_at[epochs] = []
            for wide in config.wide_choices:
                model.set_wide(wide, train)
                for appeal in config.appeal_choices:
                    model.set_item_appeal(appeal, train)
                    cells_at[epochs].append(judged(model, epoch=epochs, appeal=appeal, wide=wide))
        cells = pd.DataFrame(cells_at[epochs])
        chosen = cells.loc[cells["objective"].idxmax()]
        out.append({"world": name, "rule": rule, "epochs": epochs, "appeal": chosen["appeal"],
                    "wide": chosen["wide"], "truth": chosen["truth"],
                    "truth best epoch (smallest appeal, wide 0)":
                        int(frame.loc[frame["appeal"] == min(config.appeal_choices)]
                            .set_index("epoch")["truth"].idxmax())})
    return out


def surface(name: str, world: Path, truth, config, epoch_rules: bool = False) -> list[dict]:
    import pandas as pd

    from features.bundle_inputs import card_tiers_of, item_metadata, seen_pairs
    from features.loader import load_dataset
    from recsys import metrics
    from recsys.bundle import build_eligibility
    from recsys.ranking import top_k
    from training.config import ModelSpec
    from training.evaluate import make_holdout, recommend_holdout
    from training.selection import SELECTION_MAX_USERS, fewest_good_epochs
    from training.truth import aligned_open_prob, best_eligible, read_popularity_top1, top1_gap
    from training.tune import mean_of_gains, objective_terms, objective_value, sampled, validation_scores

    dataset = load_dataset(world)
    split = truth.as_of - pd.Timedelta(days=config.holdout_days)
    validation = make_holdout(sampled(dataset, SELECTION_MAX_USERS, config.seed), split, config.holdout_days,
                              config.features)
    train, start = validation.train, validation.split
    users, items = train.users, train.items
    tiers, seen = card_tiers_of(dataset, users.ids), seen_pairs(dataset, start, users.ids, items)
    meta = item_metadata(dataset.content, items)
    # as `make_holdout`: a pushed item counts as offerable when valid at some moment of the window
    later = meta["valid_from"].where(meta["valid_from"] > validation.as_of, pd.NaT)
    window = build_eligibility(meta.assign(valid_from=later), items, start, tiers, seen)
    now = build_eligibility(meta, items, start, tiers, seen)
    open_prob = aligned_open_prob(truth, users, items)
    popularity_top1 = read_popularity_top1(dataset, start, items, now, train.n_users)
    oracle = best_eligible(open_prob, now)
    pop_model = ModelSpec("popularity", {"by_segment": False}).build().fit(train)
    reference = validation_scores(pop_model, validation, config.k)
    relevant, readers = validation.relevant, ~validation.cold
    reference_ndcg = metrics.per_user("ndcg", recommend_holdout(pop_model, validation, config.k), relevant,
                                      config.k)
    weights = np.random.default_rng(0).poisson(1.0, (REPLICATES, train.n_users)).astype(np.float64)
    evaluated_weights = weights[:, validation.rows]
    pushes = validation.pushes
    push_weights = weights[:, pushes.rows]

    def judged(model, **where) -> dict:
        top1 = top_k(model.user_factors(np.arange(train.n_users), train.user_features), model.item_factors(),
                     1, now)[0][:, 0]
        scores = validation_scores(model, validation, config.k)
        recommended = recommend_holdout(model, validation, config.k)
        hit1 = metrics.hits_matrix(recommended[:, :1], relevant)[:, 0].astype(np.float64)
        hit5 = metrics.hits_matrix(recommended[:, :5], relevant).any(axis=1).astype(np.float64)
        factors = model.user_factors(pushes.rows, train.user_features[pushes.rows])
        push_scores = np.einsum("ij,ij->i", factors, model.item_factors()[pushes.items])
        boot_terms = objective_terms(model, validation, reference_ndcg, weights, config.k)
        gini_all_boot = 2.0 * metrics.weighted_auc(push_scores, pushes.opened, push_weights) - 1.0
        unit = np.ones((1, push_scores.size))
        gini_all = float(2.0 * metrics.weighted_auc(push_scores, pushes.opened, unit)[0] - 1.0)
        readers_term = objective_value({**scores, "non_readers.push_auc": float("nan")}, reference, config.k)
        rank, offered, _ = pushed_ranks(model, validation, window)
        standing = 1.0 - (rank - 1) / np.maximum(offered, 1)
        standing_boot = 2.0 * metrics.weighted_auc(standing, pushes.opened, push_weights) - 1.0
        return {"world": name, **where, "objective": objective_value(scores, reference, config.k),
                "readers_term": readers_term,
                "push_rank_gain": push_rank_gain(model, validation, window),
                "hit1": float(hit1.mean()),
                "hit1_balanced": float(np.mean([hit1[readers].mean(), hit1[~readers].mean()])),
                "hit5": float(hit5.mean()),
                "push_gini_all": gini_all,
                "objective_all_pushes": float(mean_of_gains(np.array([[readers_term], [gini_all]]))[0]),
                "non_readers_gini": float(2.0 * scores["non_readers.push_auc"] - 1.0),
                "standing_gini": float(2.0 * metrics.weighted_auc(standing, pushes.opened, unit)[0] - 1.0),
                "readers_hit1": float(hit1[readers].mean()),
                "boot standing_gini": standing_boot,
                "boot objective": mean_of_gains(boot_terms),
                "boot objective_all_pushes": mean_of_gains(np.stack([boot_terms[0], gini_all_boot])),
                "boot hit1": (evaluated_weights @ hit1) / evaluated_weights.sum(axis=1),
                "truth": top1_gap(open_prob, top1, popularity_top1, oracle).gap_closed}

    params = config.model.params
    start_appeal = float(params.get("item_appeal_weight", 1.0))
    model = ModelSpec(config.model.kind,
                      {**params, "wide_weight": 0.0, "item_appeal_weight": start_appeal}).build()
    states, rows = [], []

    def after_epoch(epoch: int, fitted) -> None:
        states.append(fitted.embedding_state())
        fitted.set_item_appeal(start_appeal, train)
        rows.append(judged(fitted, epoch=len(states), appeal=start_appeal, wide=0.0))

    model.fit(train, callback=after_epoch)
    if epoch_rules:
        return epoch_rule_rows(name, model, states, train, config, judged)
    epochs = fewest_good_epochs([row["objective"] for row in rows])
    model.rewind(states[epochs - 1], epochs, train)
    for wide in config.wide_choices:
        model.set_wide(wide, train)
        for appeal in config.appeal_choices:
            model.set_item_appeal(appeal, train)
            rows.append(judged(model, epoch=-epochs, appeal=appeal, wide=wide))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_arguments(parser, users=5_000)
    parser.add_argument("--data", type=Path, action="append",
                        help="an existing world directory with DIR.truth.npz beside it, instead of "
                             "synthesising (repeatable)")
    parser.add_argument("--epoch-rules", action="store_true",
                        help="score every epoch at every appeal choice and compare ways of choosing epochs")
    parser.add_argument("--out", type=Path, help="save every cell's figures (pickle) for `--report`")
    parser.add_argument("--report", type=Path, action="append",
                        help="print the summary of saved cells instead of fitting (repeatable)")
    args = parser.parse_args()

    import pandas as pd

    from training.config import load_config
    from training.truth import load_truth

    if args.report:
        report(pd.concat([pd.read_pickle(path) for path in args.report], ignore_index=True))
        return

    config = load_config(args.config)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qianmian-validation-figures-") as scratch:
        chosen = ([(path.name, path, None, path.with_name(f"{path.name}.truth.npz")) for path in args.data]
                  if args.data else worlds(args, Path(scratch)))
        for name, world, _, truth_path in chosen:
            truth = shared_truth(world) if truth_path is None else load_truth(truth_path)
            world_rows = surface(name, world, truth, config, args.epoch_rules)
            rows += world_rows
            if args.epoch_rules:
                print(pd.DataFrame(world_rows).drop(columns="world").round(3).to_string(index=False),
                      flush=True)
                continue
            table = pd.DataFrame(world_rows).drop(columns=["world", *BOOTSTRAPPED])
            print(f"\n{name}: epochs {-int(table['epoch'].min())} chosen by the objective")
            print(table.round(4).to_string(index=False), flush=True)
    if args.epoch_rules:
        frame = pd.DataFrame(rows)
        print("\ntruth (top-1 gap closed on the validation fit) at the objective's cell, by epoch rule")
        print(frame.pivot(index="world", columns="rule", values="truth")[list(EPOCH_RULES)].round(3).T
              .to_string())
        print(frame.pivot(index="world", columns="rule", values="epochs")[list(EPOCH_RULES)].T.to_string())
        return
    cells = pd.DataFrame(rows).query("epoch < 0").copy()
    if args.out:
        cells.to_pickle(args.out)
    report(cells)


def report(cells) -> None:
    """Per world: the truth at each figure's and rule's chosen cell, the best cell, Spearman rho."""
    import pandas as pd
    from scipy.stats import spearmanr

    from training.selection import best_pair

    def standardised(values):
        return (values - values.mean()) / values.std(ddof=0)

    by_world = cells.groupby("world", sort=False)
    cells = cells.assign(both=by_world["objective"].transform(standardised)
                         + by_world["push_rank_gain"].transform(standardised))
    mixes = {mix: parts for mix, parts in MIXES.items() if set(parts) <= set(cells)}
    for mix, parts in mixes.items():
        cells[mix] = sum(by_world[part].transform(standardised) for part in parts)
    figures = [figure for figure in ("objective", "push_rank_gain", "both", "hit1", "hit1_balanced", "hit5",
                                     "push_gini_all", "objective_all_pushes", "non_readers_gini",
                                     "standing_gini", "readers_hit1", *mixes) if figure in cells]
    summary = []
    for name, group in cells.groupby("world", sort=False):
        group = group.reset_index(drop=True)
        line = {"world": name, "best": group["truth"].max()}
        for figure in figures:
            line[figure] = group.loc[group[figure].idxmax(), "truth"]
            line[f"rho {figure}"] = spearmanr(group[figure], group["truth"]).correlation
        boot = {column.removeprefix("boot "): np.stack(group[column].to_numpy()) for column in BOOTSTRAPPED
                if column in group}
        for mix, parts in mixes.items():
            boot[mix] = sum((boot[part] - boot[part].mean(axis=0)) / boot[part].std(axis=0) for part in parts)
        for figure, replicates in boot.items():
            line[f"{figure} 1se"] = group.loc[one_se_cell(group, replicates, figure), "truth"]
            line[f"{figure} wins"] = group.loc[np.bincount(replicates.argmax(axis=0),
                                                           minlength=len(group)).argmax(), "truth"]
        pairs = list(zip(group["appeal"], group["wide"], strict=True))
        objectives = dict(zip(pairs, group["objective"], strict=True))
        within = appeal_within_noise(objectives, dict(zip(pairs, group["boot objective"], strict=True)))
        line["appeal within noise"] = group.loc[pairs.index(within), "truth"]
        line["engine's rule"] = group.loc[pairs.index(best_pair(objectives)), "truth"]
        summary.append(line)
    frame = pd.DataFrame(summary).set_index("world")
    rules = [column for column in frame.columns if not column.startswith("rho") and column != "best"]
    print("\ntruth (top-1 gap closed on the validation fit) at each figure's chosen cell, the best cell")
    print(frame[["best", *rules]].round(3).T.to_string())
    print("\nSpearman correlation of each figure with the truth over the cells")
    print(frame[[column for column in frame.columns if column.startswith("rho")]].round(2).T.to_string())
    print("mean below the best cell: " + ", ".join(
        f"{rule} {(frame[rule] - frame['best']).mean():.3f}" for rule in rules))


def appeal_within_noise(objectives: dict[tuple[float, float], float],
                        replicates: dict[tuple[float, float], np.ndarray]) -> tuple[float, float]:
    """(appeal, wide): the best pair's wide weight, and the lowest appeal there whose objective is within
    one standard error of the best pair's (the error of their paired difference over `replicates`)."""
    from training.selection import best_pair

    best = best_pair(objectives)

    def error(pair: tuple[float, float]) -> float:
        difference = replicates[best] - replicates[pair]
        difference = difference[np.isfinite(difference)]
        return float(difference.std()) if difference.size else float("nan")

    close = [pair for pair, value in objectives.items()
             if pair[1] == best[1] and value >= objectives[best] - error(pair)]
    return min(close or [best], key=lambda pair: pair[0])


def one_se_cell(group, replicates, figure: str) -> int:
    """The cell with the lowest (wide, appeal) whose figure is within one bootstrap standard error of the
    best cell's (the error of their paired difference over the replicates)."""
    best = int(group[figure].idxmax())
    spread = (replicates[best] - replicates).std(axis=1)
    close = group[figure] >= group.loc[best, figure] - spread
    return int(group.loc[close].sort_values(["wide", "appeal"]).index[0])


if __name__ == "__main__":
    main()
