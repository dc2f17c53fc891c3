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

With `--sampled` it also fits the ridge on *sampled* labels instead of the truth, over every cardholder
(non-readers' pushes are evidence too), to show how much each evidence source loses in estimation:

- `positives`: the wide part's labels, 1 for an item read or opened as a push by the as-of time, else 0;
- `push outcomes`: for each item only the cardholders it was pushed to (opened, or sent at least
  `negative_grace_days` before the as-of time), opened = 1, ignored = 0: a masked per-item ridge with
  its own intercept, so the slopes shrink towards the item's open rate; items never pushed get none;
- `push outcomes by tag`: the same masked ridge per item tag (the pushes of every item carrying it),
  an item's deviation the mean of its tags': what pushes of other items say about an item never pushed;
- `both`: `positives` and `push outcomes` added, each scaled to a standard deviation of 1;
- `choice`: a conditional (multinomial) logit of which item each positive event (a cardholder's first
  read or opened push of an item, by the as-of time) chose among the items on offer at that moment (their
  validity windows, transactional notices left out): P(i | event of u) = softmax over those items of
  b_i + x_u . W_i, x_u the standardised features without reading history (the ones non-readers have),
  penalty `l2` / 2 x |W|^2 on the mean log-likelihood, fitted by L-BFGS (`--choice-l2`, each printed as
  `choice L`). Unlike `positives` it does not count an item as unread by someone active before it was
  on offer, and a cardholder's number of events does not enter the slopes;
- `choice rank K` (`--choice-rank K ...`): the same logit at penalty 0.1 with its slopes' rank-K term
  through the item features (kind, tags, title words, tier restriction, transactional), A (Y C)^T penalised by
  `--choice-rank-l2` (the model's `wide_choice_rank` / `wide_choice_rank_l2`), alone and beside
  `positives`, and with a `config` beside the teacher (`teacher + choice rank K`);
- `distilled`: knowledge distillation. One fit of the engine's LightFM part (the configuration's model
  without the wide part or item appeal) at the as-of time is the teacher: its score for every
  reader, history features included, pools all their reads through the embeddings; each reader's row
  of scores is standardised (mean 0, spread 1 over the items) and those are the labels of the wide
  part's ridge (`recsys.models.wide.fit_ridge_labels`), fitted on the readers' rows and on their
  history-dropped copies (the same labels), so the features a non-reader has learn a reader's
  denoised taste. `teacher` is the teacher's own standardised score for the non-readers (what the
  student must beat); `A + B` adds two sources, each scaled to a spread of 1 (`teacher + positives` is
  the engine's LightFM part beside today's wide part, `teacher + distilled` beside a distilled one).

Each gives a cardholder's deviation from the item's mean (centred per item); the non-readers are ranked
by the readers' true mean open probability of the item (which alone is popularity: 0 of the gap) plus
that deviation scaled to t times the spread of the truth ridge's deviation, and the best t of
`SCALES` is kept (printed beside it), so every source gets the same, optimistic, treatment.

    .venv/bin/python benchmarks/taste_transfer.py --users 3000 --configs a.yaml b.yaml
    .venv/bin/python benchmarks/taste_transfer.py --users 3000 --neighbours 30
    .venv/bin/python benchmarks/taste_transfer.py --users 3000 --sampled
    .venv/bin/python benchmarks/taste_transfer.py --users 3000 --sampled --only-positives-choice \
        --positive-l2 30 --choice-l2 0.1 0.01 0.001
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
from training.config import DEFAULT_MODEL  # noqa: E402

# the default configuration's model settings (the choice logit's penalties)
DEFAULT_PARAMS = DEFAULT_MODEL["params"]

# multiples of the truth ridge's spread tried for a sampled deviation
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


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


def standardised(features: sp.spmatrix) -> np.ndarray:
    """Dense columns centred and scaled to unit variance (constant columns left at 0)."""
    dense = np.asarray(sp.csr_matrix(features).toarray(), dtype=np.float64)
    dense -= dense.mean(axis=0)
    scale = dense.std(axis=0)
    scale[scale == 0] = 1.0
    return dense / scale


def positive_deviation(features: sp.csr_matrix, positives: np.ndarray, l2: float) -> np.ndarray:
    """[n, items]: each row's centred score from the wide part's per-item ridge of `positives` (0/1) on
    `features` over every row (`recsys.models.wide.fit_ridge`, penalty `l2` x n), kept at full rank."""
    from recsys.models.wide import fit_ridge

    ridge = fit_ridge(features, sp.csr_matrix(positives), l2, max_rank=positives.shape[1])
    return ridge.user_block(features) @ ridge.items.T + ridge.offset


def push_deviation(features: np.ndarray, sent: sp.csc_matrix, opened: sp.csc_matrix, l2: float) -> np.ndarray:
    """[n, items]: each row's centred score from a per-item ridge of `opened` on the standardised
    `features`, fitted only on the rows `sent` marks for that item (with its own intercept, penalty
    `l2` x the item's sends); 0 for an item never sent."""
    out = np.zeros((features.shape[0], sent.shape[1]))
    for item in range(sent.shape[1]):
        rows = sent.indices[sent.indptr[item]:sent.indptr[item + 1]]
        if rows.size < 2:
            continue
        labels = np.asarray(opened[rows, item].toarray()).ravel().astype(np.float64)
        fitted = features[rows] - features[rows].mean(axis=0)
        target = labels - labels.mean()
        penalty = l2 * rows.size
        if rows.size <= features.shape[1]:  # the dual form: an n_sent x n_sent system is the smaller one
            weights = fitted.T @ np.linalg.solve(fitted @ fitted.T + penalty * np.eye(rows.size), target)
        else:
            weights = np.linalg.solve(fitted.T @ fitted + penalty * np.eye(fitted.shape[1]),
                                      fitted.T @ target)
        out[:, item] = features @ weights
    return out


def sampled_labels(dataset, as_of: pd.Timestamp, user_ids: np.ndarray, item_ids: np.ndarray, grace_days: float
                   ) -> tuple[np.ndarray, sp.csc_matrix, sp.csc_matrix]:
    """(positives dense 0/1, sent, opened) [users, items] from the reads and the push log up to `as_of`:
    positives are reads and opened pushes; `sent` the pushes opened or sent `grace_days` before it."""
    from recsys.ids import IdIndex

    users, items = IdIndex(user_ids), IdIndex(item_ids)
    shape = (len(users), len(items))

    def matrix(frame: pd.DataFrame) -> sp.csc_matrix:
        rows = users.index_of(frame["user_id"].astype(str).to_numpy(dtype=object))
        cols = items.index_of(frame["content_id"].astype(str).to_numpy(dtype=object))
        keep = (rows >= 0) & (cols >= 0)
        ones = np.ones(int(keep.sum()))
        counts = sp.csc_matrix((ones, (rows[keep], cols[keep])), shape=shape)
        return sp.csc_matrix(counts > 0, dtype=np.float64)

    reads = dataset.article_reads.loc[(dataset.article_reads["ts"] <= as_of).to_numpy()]
    pushes = dataset.push_log
    is_open = (pushes["opened_ts"].notna() & (pushes["opened_ts"] <= as_of)).to_numpy()
    counted = is_open | (pushes["sent_ts"] <= as_of - pd.Timedelta(days=grace_days)).to_numpy()
    opened = matrix(pushes.loc[is_open])
    positives = ((matrix(reads) + opened) > 0).toarray().astype(np.float64)
    return positives, matrix(pushes.loc[counted]), opened


def tag_deviation(features: np.ndarray, sent: sp.csc_matrix, opened: sp.csc_matrix, tags: sp.csr_matrix,
                  l2: float) -> np.ndarray:
    """`push_deviation` per tag (the pushes of every item carrying it), each item the mean of its tags'."""
    carries = sp.csr_matrix(tags > 0, dtype=np.float64)
    per_tag = push_deviation(features, sp.csc_matrix((sent @ carries) > 0, dtype=np.float64),
                             sp.csc_matrix((opened @ carries) > 0, dtype=np.float64), l2)
    counts = np.asarray(carries.sum(axis=1)).ravel()
    return per_tag @ (sp.diags(1.0 / np.maximum(counts, 1.0)) @ carries).T.toarray()


def standardised_rows(scores: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit spread (a constant row left at 0): a cardholder's scores
    as labels, free of their own level and scale."""
    centred = scores - scores.mean(axis=1, keepdims=True)
    spread = centred.std(axis=1, keepdims=True)
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)


def distilled_deviations(dataset, as_of: pd.Timestamp, config, user_ids: np.ndarray, item_ids: np.ndarray,
                         l2: float, epochs: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(student, teacher) [users, items] for `user_ids` x `item_ids` (see the module's `distilled`)."""
    from features.pipeline import build_training_matrices
    from recsys.ids import IdIndex
    from recsys.models.lightfm_hybrid import COPY_PREFIX
    from recsys.models.wide import fit_ridge_labels
    from training.config import ModelSpec

    data, _ = build_training_matrices(dataset, as_of, config.features)
    params = {**config.model.params, "wide_weight": 0.0, "item_appeal_weight": 0.0}
    if epochs:
        params["epochs"] = epochs
    teacher = ModelSpec(config.model.kind, params).build().fit(data)
    labels = standardised_rows(teacher.user_factors(np.arange(data.n_users), data.user_features)
                               @ teacher.item_factors().T)
    rows = teacher.with_history_dropped(data)  # the readers again, without their reading history
    copies = [str(user)[len(COPY_PREFIX):] for user in rows.users.ids[data.n_users:]]
    readers = data.users.index_of(np.asarray(copies, dtype=object))
    fitted = np.concatenate([readers, data.n_users + np.arange(readers.size)])
    student = fit_ridge_labels(sp.csr_matrix(rows.user_features)[fitted],
                               labels[np.concatenate([readers, readers])], l2, max_rank=data.n_items)
    predicted = student.user_block(data.user_features) @ student.items.T + student.offset
    columns = IdIndex(data.items.ids).index_of(np.asarray(item_ids, dtype=object))
    order = data.users.index_of(np.asarray(user_ids, dtype=object))
    present, known = order >= 0, columns >= 0
    cells = np.ix_(order[present], columns[known])
    shape = (user_ids.size, item_ids.size)
    out_student, out_teacher = np.zeros(shape), np.zeros(shape)
    out_student[np.ix_(present, known)] = predicted[cells]
    out_teacher[np.ix_(present, known)] = (labels - labels.mean(axis=0))[cells]
    return out_student, out_teacher


def choice_inputs(dataset, as_of: pd.Timestamp, features: sp.csr_matrix, feature_names: tuple[str, ...],
                  user_ids: np.ndarray, item_ids: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(standardised features without reading history, then `choice_sets`' cardholder, item and offer
    arrays) of every non-transactional item's positive events by `as_of`."""
    from features.config import FeatureConfig
    from features.interactions import first_positive_days, offer_days
    from recsys.ids import IdIndex
    from recsys.models.choice import choice_sets
    from recsys.models.lightfm_hybrid import HISTORY_PREFIXES, NO_HISTORY

    keep = [j for j, name in enumerate(feature_names) if not name.startswith(HISTORY_PREFIXES)
            and name != NO_HISTORY]
    items_index = IdIndex(item_ids)
    days = first_positive_days(dataset, as_of, IdIndex(user_ids), items_index, FeatureConfig())
    return (standardised(sp.csr_matrix(features)[:, keep]),
            *choice_sets(days, offer_days(dataset, items_index)))


def choice_deviations(inputs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], live: np.ndarray,
                      l2s: tuple[float, ...]) -> dict[float, np.ndarray]:
    """Per penalty of `l2s`, [users, live items]: x_u . W_i centred per item from `fit_choice` on
    `choice_inputs` (see the module's `choice`), x_u without reading history; fitted from the heaviest
    penalty down, each from the previous fit."""
    from recsys.models.choice import fit_choice

    standard, users, items, offered = inputs
    out, start = {}, None
    for l2 in sorted(l2s, reverse=True):
        bias, weights = fit_choice(standard, users, items, offered, l2, start=start)
        start = np.concatenate([bias, weights.ravel()])
        scores = standard @ weights[:, live]
        out[l2] = scores - scores.mean(axis=0)
    return out


def low_rank_choice_deviations(inputs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                               item_features: sp.csr_matrix, live: np.ndarray, ranks: tuple[int, ...],
                               l2: float) -> dict[int, np.ndarray]:
    """Per rank of `ranks`, [users, live items]: the choice logit on `choice_inputs` whose slopes add a
    rank-K term A (item features C)^T (`fit_choice` with `rank`, its penalty `l2`; the full-rank slopes
    at the default configuration's `wide_choice_l2`), x_u without reading history, centred per item."""
    from recsys.models.choice import fit_choice

    standard, users, items, offered = inputs
    dense_items = sp.csr_matrix(item_features).toarray()
    out = {}
    for rank in ranks:
        _, weights = fit_choice(standard, users, items, offered, DEFAULT_PARAMS["wide_choice_l2"], rank=rank,
                                item_features=dense_items, rank_l2=l2)
        scores = standard @ weights[:, live]
        out[rank] = scores - scores.mean(axis=0)
    return out


def unit_spread_sum(*deviations: np.ndarray) -> np.ndarray:
    """Two or more sources added, each scaled to a standard deviation of 1."""
    return sum(deviation / max(deviation.std(), 1e-12) for deviation in deviations)


def best_scaled(deviation: np.ndarray, level: np.ndarray, spread: float, truth: np.ndarray, rows: np.ndarray,
                popular: int) -> tuple[float, float]:
    """(gap closed, t) of `level` + `deviation` scaled to t x `spread`, the best t of `SCALES`."""
    own = deviation.std()
    if own == 0:
        return gap_closed(np.broadcast_to(level, truth.shape), truth, rows, popular), 0.0
    results = [(gap_closed(level + deviation * (t * spread / own), truth, rows, popular), t) for t in SCALES]
    return max(results)


def sampled_figures(dataset, as_of: pd.Timestamp, truth: Truth, live: np.ndarray, features: sp.csr_matrix,
                    item_features: sp.csr_matrix, item_feature_names: tuple[str, ...], ridge: np.ndarray,
                    open_prob: np.ndarray, readers: np.ndarray, others: np.ndarray, popular: int, l2: float,
                    push_l2: float, grace_days: float, config=None, teacher_epochs: int | None = None,
                    user_feature_names: tuple[str, ...] = (), positive_l2s: tuple[float, ...] = (),
                    choice_l2s: tuple[float, ...] = (), pushes: bool = True,
                    choice_ranks: tuple[int, ...] = (),
                    choice_rank_l2: float = DEFAULT_PARAMS["wide_choice_rank_l2"]) -> dict:
    """The non-readers' gap closed of each sampled-label source (see the module); `positives L` for
    each of `positive_l2s` beside `positives` at `l2`, `choice L` for each of `choice_l2s`, `choice
    rank K` for each of `choice_ranks`; push outcomes only with `pushes`, distillation only with a
    `config`. `item_features` has a row for every item of `truth`."""
    positives, sent, opened = sampled_labels(dataset, as_of, truth.user_ids, truth.item_ids[live], grace_days)
    standard = standardised(features)
    level = open_prob[readers].mean(axis=0)
    spread = float((ridge - ridge.mean(axis=0)).std())
    tag_columns = [j for j, name in enumerate(item_feature_names) if name.startswith("tag:")]
    deviations = {"positives": positive_deviation(features, positives, l2)}
    for penalty in positive_l2s:
        deviations[f"positives {penalty:g}"] = positive_deviation(features, positives, penalty)
    if choice_l2s or choice_ranks:
        inputs = choice_inputs(dataset, as_of, features, user_feature_names, truth.user_ids, truth.item_ids)
    if choice_l2s:
        fitted = choice_deviations(inputs, live, choice_l2s)
        for penalty in choice_l2s:
            deviations[f"choice {penalty:g}"] = fitted[penalty]
    if choice_ranks:
        fitted = low_rank_choice_deviations(inputs, item_features, live, choice_ranks, choice_rank_l2)
        for rank in choice_ranks:
            deviations[f"choice rank {rank}"] = fitted[rank]
            deviations[f"choice rank {rank} + positives"] = unit_spread_sum(fitted[rank],
                                                                             deviations["positives"])
    if pushes:
        deviations["push outcomes"] = push_deviation(standard, sent, opened, push_l2)
        tags = sp.csr_matrix(sp.csr_matrix(item_features)[live][:, tag_columns])
        deviations["push outcomes by tag"] = tag_deviation(standard, sent, opened, tags, push_l2)
        deviations["both"] = unit_spread_sum(deviations["positives"], deviations["push outcomes"])
    if config is not None:
        deviations["distilled"], deviations["teacher"] = distilled_deviations(
            dataset, as_of, config, truth.user_ids, truth.item_ids[live], l2, teacher_epochs)
        for first, second in (("distilled", "positives"), ("teacher", "positives"), ("teacher", "distilled")):
            deviations[f"{first} + {second}"] = unit_spread_sum(deviations[first], deviations[second])
        for rank in choice_ranks:
            low_rank = deviations[f"choice rank {rank}"]
            deviations[f"teacher + choice rank {rank}"] = unit_spread_sum(deviations["teacher"], low_rank)
            deviations[f"teacher + positives + choice rank {rank}"] = unit_spread_sum(
                deviations["teacher"], deviations["positives"], low_rank)
    row = {"pushed items": int((np.diff(sent.indptr) > 0).sum()), "live items": int(live.sum())}
    for name, deviation in deviations.items():
        row[name], row[f"{name} t"] = best_scaled(deviation, level, spread, open_prob, others, popular)
    return row


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
            l2: float, neighbours: int | None, sampled: bool = False, push_l2: float = 1.0,
            teacher_epochs: int | None = None, positive_l2s: tuple[float, ...] = (),
            choice_l2s: tuple[float, ...] = (), only: bool = False, choice_ranks: tuple[int, ...] = (),
            choice_rank_l2: float = DEFAULT_PARAMS["wide_choice_rank_l2"]) -> list[dict]:
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
        config = load_config(path)
        features_config = config.features
        builder = FeatureBuilder(features_config).fit(dataset, as_of)
        features = builder.transform_users(dataset, as_of, truth.user_ids)
        ridge = ridge_scores(features, open_prob, readers, l2)
        row = {"world": name, "config": str(path or "default"), "columns": features.shape[1],
               "ridge": gap_closed(ridge, open_prob, others, popular)}
        if neighbours:
            nearest = neighbour_scores(builder, features, open_prob, readers, others, neighbours)
            row["neighbours"] = gap_closed(nearest, open_prob, others, popular)
            row["ridge + neighbours"] = gap_closed((ridge + nearest) / 2, open_prob, others, popular)
        if sampled:
            item_features = builder.transform_items(dataset.content, truth.item_ids)
            row |= sampled_figures(dataset, as_of, truth, live, features, item_features,
                                   builder.item_feature_names, ridge, open_prob, readers, others, popular,
                                   l2, push_l2, features_config.negative_grace_days,
                                   None if only else config, teacher_epochs, builder.user_feature_names,
                                   positive_l2s, choice_l2s, pushes=not only, choice_ranks=choice_ranks,
                                   choice_rank_l2=choice_rank_l2)
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
    parser.add_argument("--sampled", action="store_true",
                        help="also the ridge on sampled labels: positives, push outcomes (per item, "
                             "per tag), both, distilled from the engine's LightFM part")
    parser.add_argument("--push-l2", type=float, default=1.0,
                        help="the push-outcome ridges' penalty (per push sent)")
    parser.add_argument("--teacher-epochs", type=int, default=None,
                        help="epochs of the distillation's teacher (default: the configuration's)")
    parser.add_argument("--positive-l2", type=float, nargs="+", default=(), metavar="L",
                        help="also the positives' ridge at these penalties")
    parser.add_argument("--choice-l2", type=float, nargs="+", default=(), metavar="L",
                        help="also the choice logit at these penalties")
    parser.add_argument("--choice-rank", type=int, nargs="+", default=(), metavar="K",
                        help="also the choice logit with a rank-K term through the item features")
    parser.add_argument("--choice-rank-l2", type=float, default=DEFAULT_PARAMS["wide_choice_rank_l2"],
                        help="the choice logit's rank-K term's penalty on both of its factors (default: "
                             "the default configuration's)")
    parser.add_argument("--only-positives-choice", action="store_true",
                        help="with --sampled, leave out the push-outcome and distilled sources")
    args = parser.parse_args()
    configs = args.configs or [args.config]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qianmian-transfer-") as scratch:
        for name, world, as_of, truth_path in worlds(args, Path(scratch)):
            rows += measure(name, world, as_of, truth_path, configs, args.l2, args.neighbours, args.sampled,
                            args.push_l2, args.teacher_epochs, tuple(args.positive_l2),
                            tuple(args.choice_l2), args.only_positives_choice, tuple(args.choice_rank),
                            args.choice_rank_l2)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda value: f"{value:.3f}"))


if __name__ == "__main__":
    main()
