"""How much of non-readers' taste the cardholder features carry, free of model noise.

For each world of `benchmarks/quality.py` (synthetic ones with their truth file, and the shared
independent world with its `independent.hidden.npz`), it builds the engine's cardholder features at
the world's as-of time under each of `--configs`, fits a ridge regression from them to the readers'
*true* open probabilities of the items on offer (transactional notices left out), applies it to the
cardholders who never read and prints the share of the popularity-to-oracle gap in true top-1 open
probability that ranking closes (popularity: the item of the highest mean truth over readers; items
already read or pushed are not excluded, so the scale is close to, not the same as, `quality.py`'s).
The truth stands in for a perfect learner of readers' taste, so the figure compares feature sets
without 2-thread fit noise: a family that does not raise it does not help carry readers' taste to
non-readers through a linear map. It is a reference, not a bound on the engine, which also learns from
non-readers' opened pushes and item appeal.

With `--neighbours K` it also prints the same figure for each non-reader's K nearest readers' mean true
taste (cosine over idf-weighted purchase-count shares per raw MCC and menu-click shares), alone and
averaged with the ridge: what a neighbour-taste family could add.

    .venv/bin/python benchmarks/taste_transfer.py --users 3000 --configs a.yaml b.yaml
    .venv/bin/python benchmarks/taste_transfer.py --users 3000 --neighbours 30
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.quality import SHARED, world_arguments, worlds  # noqa: E402


@dataclass(frozen=True)
class Truth:
    """True open probabilities [cardholders, items] with their ids and who reads at all."""

    open_prob: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    reader: np.ndarray


def load_world_truth(truth_path: Path | None) -> Truth:
    if truth_path is None:
        hidden = np.load(SHARED / "independent.hidden.npz", allow_pickle=True)
        return Truth(hidden["p"], hidden["users"].astype(str), hidden["items"].astype(str),
                     hidden["reader"].astype(bool))
    from training.truth import load_truth

    truth = load_truth(truth_path)
    return Truth(np.asarray(truth.open_prob), np.asarray(truth.user_ids).astype(str),
                 np.asarray(truth.content_ids).astype(str), np.asarray(truth.user_reader).astype(bool))


def on_offer(content: pd.DataFrame, item_ids: np.ndarray, as_of: pd.Timestamp) -> np.ndarray:
    """bool per item: valid at `as_of` and not a transactional notice."""
    frame = content.drop_duplicates("content_id")
    frame = frame.set_index(frame["content_id"].astype(str).to_numpy(dtype=object)).reindex(item_ids)
    begin = pd.to_datetime(frame["valid_from"], utc=True)
    end = pd.to_datetime(frame["valid_to"], utc=True)
    valid = (begin.isna() | (begin <= as_of)) & (end.isna() | (end >= as_of))
    return (valid & ~frame["transactional"].fillna(False).astype(bool)).to_numpy()


def gap_closed(scores: np.ndarray, truth: np.ndarray, rows: np.ndarray, popular: int) -> float:
    """Share of the popularity-to-oracle gap in true top-1 open probability over `rows`."""
    chosen = truth[rows, scores[rows].argmax(axis=1)].mean()
    base = truth[rows, popular].mean()
    return float((chosen - base) / (truth[rows].max(axis=1).mean() - base))


def ridge_scores(features: sp.csr_matrix, truth: np.ndarray, fit_rows: np.ndarray, l2: float) -> np.ndarray:
    """Every row's predicted truth from a ridge (with intercept) fitted on `fit_rows`."""
    design = sp.hstack([features, np.ones((features.shape[0], 1))], format="csr").astype(np.float64)
    fitted = design[fit_rows]
    gram = (fitted.T @ fitted).toarray() + l2 * np.eye(design.shape[1])
    return np.asarray(design @ np.linalg.solve(gram, fitted.T @ truth[fit_rows]))


def neighbour_scores(builder, features: sp.csr_matrix, truth: np.ndarray, readers: np.ndarray,
                     others: np.ndarray, k: int) -> np.ndarray:
    """Each of `others`' rows: the mean truth of its `k` nearest `readers` in the behaviour profile."""
    from features.builder import USER_FAMILIES, family_weights

    names = builder.user_feature_names
    weights = family_weights(names, USER_FAMILIES, builder.config).astype(np.float64)
    columns = [j for j, name in enumerate(names) if name.startswith(("visits", "clicks")) and weights[j] > 0]
    profiles = sp.csr_matrix(features[:, columns] @ sp.diags(1.0 / weights[columns]), dtype=np.float64)
    document_frequency = np.bincount(profiles.indices, minlength=profiles.shape[1])
    idf = np.log((1.0 + profiles.shape[0]) / (1.0 + document_frequency)) + 1.0
    points = profiles @ sp.diags(idf)
    norms = np.sqrt(np.asarray(points.multiply(points).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    points = sp.csr_matrix(sp.diags(scale) @ points)
    similarity = np.asarray((points[others] @ points[readers].T).todense())
    nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
    out = np.zeros_like(truth)
    out[others] = truth[readers][nearest].mean(axis=1)
    return out


def measure(name: str, world: Path, as_of: pd.Timestamp, truth_path: Path | None, configs: list[Path | None],
            l2: float, neighbours: int | None) -> list[dict]:
    from features.builder import FeatureBuilder
    from features.loader import load_dataset
    from training.config import load_config

    dataset = load_dataset(world)
    truth = load_world_truth(truth_path)
    live = on_offer(dataset.content, truth.item_ids, as_of)
    open_prob = np.asarray(truth.open_prob, dtype=np.float64)[:, live]
    readers, others = np.flatnonzero(truth.reader), np.flatnonzero(~truth.reader)
    popular = int(open_prob[readers].mean(axis=0).argmax())
    rows = []
    for path in configs:
        features_config = load_config(path).features
        builder = FeatureBuilder(features_config).fit(dataset, as_of)
        features = builder.transform_users(dataset, as_of, truth.user_ids)
        ridge = ridge_scores(features, open_prob, readers, l2)
        row = {"world": name, "config": str(path or "default"), "columns": features.shape[1],
               "ridge": gap_closed(ridge, open_prob, others, popular)}
        if neighbours:
            nearest = neighbour_scores(builder, features, open_prob, readers, others, neighbours)
            row["neighbours"] = gap_closed(nearest, open_prob, others, popular)
            row["ridge + neighbours"] = gap_closed((ridge + nearest) / 2, open_prob, others, popular)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_arguments(parser, users=3_000)
    parser.add_argument("--configs", type=Path, nargs="+", default=None, metavar="FILE",
                        help="training configurations whose features are measured side by side "
                             "(default: --config, else the built-in one)")
    parser.add_argument("--l2", type=float, default=1.0, help="the ridge's penalty")
    parser.add_argument("--neighbours", type=int, default=None, help="also the K nearest readers' taste")
    args = parser.parse_args()
    configs = args.configs or [args.config]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qianmian-transfer-") as scratch:
        for name, world, as_of, truth_path in worlds(args, Path(scratch)):
            rows += measure(name, world, as_of, truth_path, configs, args.l2, args.neighbours)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda value: f"{value:.3f}"))


if __name__ == "__main__":
    main()
