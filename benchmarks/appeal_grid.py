"""Top-1 gap closed of one engine fit per world at every item appeal x wide weight, against the truth.

For each world of `benchmarks/quality.py` (the same synthetic presets and the shared independent
world) it chooses the epochs on the validation window as `recsys train` does, fits the engine once at
the world's as-of time, then applies every pair of `--appeals` x `--wides` to that fit (no refit) and
prints the share of the popularity-to-oracle gap in true top-1 open probability each closes, overall /
non-readers. It shows what the validation choice leaves on the table and whether a feature or model
change moves the whole surface rather than one noisy choice; the truth is read here, never by the
product.

With `--by-group` it instead keeps the validation's wide weight and asks whether one appeal for
everyone is the right shape: it groups the cardholders by how much their own data says
(`benchmarks/appeal_groups.py`: reads or none, positives in training, card transactions, reads crossed
with each of the other two), takes each group's best appeal by the truth and prints, per grouping, the
gap closed when every group ranks with its own appeal beside the best single appeal; "cross-fitted"
chooses each group's appeal on the other half of the cardholders, so the figure is not flattered by
choosing and scoring on the same cardholders.

    .venv/bin/python benchmarks/appeal_grid.py --users 5000
    .venv/bin/python benchmarks/appeal_grid.py --users 3000 --appeals 0.25 0.5 1 2 --by-group
    .venv/bin/python benchmarks/appeal_grid.py --config my.yaml --world "merchants=--scenario merchants"
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from appeal_groups import best_per_group, composed, cross_fitted, evidence_groupings  # noqa: E402
from quality import eligibility_at, recommendation_frame, score, top5, world_arguments, worlds  # noqa: E402


def grid(name: str, world: Path, as_of, truth_path: Path | None, config, appeals: list[float],
         wides: list[float]) -> None:
    dataset, data, model, selection = fitted_engine(world, as_of, config)
    print(f"{name}: {selection.epochs} epochs; validation chose appeal {selection.item_appeal_weight:g}, "
          f"wide {selection.wide_weight:g}", flush=True)
    for wide in wides:
        model.set_wide(wide, data)
        cells = []
        for appeal in appeals:
            model.set_item_appeal(appeal, data)
            overall, cold = score(world, top5(model, data, dataset, as_of), dataset, truth_path)
            cells.append(f"appeal {appeal:g} {overall:.3f} / {cold:.3f}")
        print(f"  wide {wide:<5g} " + "   ".join(cells), flush=True)


def fitted_engine(world: Path, as_of, config):
    """The engine fitted once at `as_of` with the epochs, appeal and wide weight the validation chose."""
    import pandas as pd

    from features.loader import load_dataset
    from features.pipeline import build_training_matrices
    from training.selection import choose_on_validation

    dataset = load_dataset(world)
    selection = choose_on_validation(dataset, as_of - pd.Timedelta(days=config.holdout_days), config,
                                     echo=lambda line: None)
    chosen = selection.apply(config)
    data, _ = build_training_matrices(dataset, as_of, chosen.features)
    return dataset, data, chosen.model.build().fit(data), selection


def counts_before(frame, column: str, as_of, user_ids) -> np.ndarray:
    """Events per cardholder (in `user_ids` order) at or before `as_of`."""
    kept = frame.loc[(frame[column] <= as_of).to_numpy()]
    return kept["user_id"].astype(str).value_counts().reindex(np.asarray(user_ids).astype(str)) \
        .fillna(0).to_numpy()


def by_group(name: str, world: Path, as_of, truth_path: Path | None, config, appeals: list[float]) -> None:
    from validation_figures import shared_truth

    from recsys.ranking import top_k
    from training.truth import aligned_open_prob, best_eligible, load_truth, read_popularity_top1, top1_gap

    dataset, data, model, selection = fitted_engine(world, as_of, config)
    truth = shared_truth(world) if truth_path is None else load_truth(truth_path)
    open_prob = aligned_open_prob(truth, data.users, data.items)
    eligibility = eligibility_at(data, dataset, as_of)
    reads = counts_before(dataset.article_reads, "ts", as_of, data.users.ids)
    popular = read_popularity_top1(dataset, as_of, data.items, eligibility, data.n_users)
    oracle = best_eligible(open_prob, eligibility)
    picks, values = [], []
    factors_at = np.arange(data.n_users)
    for appeal in appeals:
        model.set_item_appeal(appeal, data)
        ranked, _ = top_k(model.user_factors(factors_at, data.user_features), model.item_factors(), 5,
                          eligibility)
        picks.append(ranked)
        top1 = ranked[:, 0]
        values.append(np.where((top1 >= 0) & (oracle >= 0), open_prob[factors_at, np.maximum(top1, 0)], 0.0))
    picks, values = np.stack(picks), np.stack(values)

    def scored(indices) -> tuple[float, float]:
        return score(world, recommendation_frame(indices, data), dataset, truth_path)

    cells = [scored(picks[cell]) for cell in range(len(appeals))]
    best = int(np.argmax([overall for overall, _ in cells]))
    print(f"{name}: {selection.epochs} epochs; validation chose appeal {selection.item_appeal_weight:g}, "
          f"wide {selection.wide_weight:g}; every appeal at that wide weight, overall / non-readers:",
          flush=True)
    print("  " + "   ".join(f"appeal {appeal:g} {overall:.3f} / {cold:.3f}"
                            for appeal, (overall, cold) in zip(appeals, cells, strict=True)), flush=True)
    positives = np.diff(data.interactions.tocsr().indptr)
    spend = counts_before(dataset.transactions, "ts", as_of, data.users.ids)
    half = np.random.default_rng(0).random(data.n_users) < 0.5
    for grouping in evidence_groupings(reads, positives, spend):
        n_groups = len(grouping.names)
        chosen = best_per_group(values, grouping.labels, n_groups)
        print(f"  by {grouping.scheme}:", flush=True)
        for group, group_name in enumerate(grouping.names):
            rows = grouping.labels == group
            gaps = [top1_gap(open_prob, picks[cell][:, 0], popular, oracle, rows).gap_closed
                    for cell in range(len(appeals))]
            print(f"    {group_name:<22} {int(rows.sum()):>6} cardholders: "
                  + "  ".join(f"{appeal:g} {gap:6.3f}" for appeal, gap in zip(appeals, gaps, strict=True))
                  + f"  -> best {appeals[chosen[group]]:g}", flush=True)
        own = scored(composed(picks, chosen[grouping.labels]))
        fitted = scored(composed(picks, cross_fitted(values, grouping.labels, n_groups, half)))
        single = cells[best]
        print(f"    each group its own appeal {own[0]:.3f} / {own[1]:.3f}, cross-fitted {fitted[0]:.3f} / "
              f"{fitted[1]:.3f}; best single appeal {appeals[best]:g} {single[0]:.3f} / {single[1]:.3f} "
              f"(difference {own[0] - single[0]:+.3f} / {own[1] - single[1]:+.3f}, cross-fitted "
              f"{fitted[0] - single[0]:+.3f} / {fitted[1] - single[1]:+.3f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_arguments(parser, users=5_000)
    parser.add_argument("--appeals", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    parser.add_argument("--wides", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--by-group", action="store_true",
                        help="at the validation's wide weight, the best appeal per group of cardholders "
                             "against the best single appeal")
    args = parser.parse_args()

    from training.config import load_config

    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="qianmian-appeal-grid-") as scratch:
        for name, world, as_of, truth_path in worlds(args, Path(scratch)):
            if args.by_group:
                by_group(name, world, as_of, truth_path, config, args.appeals)
            else:
                grid(name, world, as_of, truth_path, config, args.appeals, args.wides)


if __name__ == "__main__":
    main()
