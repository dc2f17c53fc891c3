"""LightFM hybrid model: users and items are sums of embeddings of their identity and side features.

A cardholder's representation is `identity embedding + feature_weight * sum(feature embeddings)`, so a
cardholder unknown at fit time (no identity) is still represented from features alone: card spend,
menu clicks and profile give a personalised ranking before the first read. Items likewise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recsys.ids import IdIndex
from recsys.matrices import TrainingMatrices
from recsys.models.appeal import engagement_rate, open_rate_logit
from recsys.models.base import (
    EpochCallback,
    ModelError,
    Recommender,
    check_at_least_one,
    check_user_inputs,
)
from recsys.models.choice import fit_choice_factors
from recsys.models.wide import RidgeFactors, fit_ridge

logger = logging.getLogger(__name__)

HISTORY_PREFIXES = ("topic:", "reads_level")
NO_HISTORY = "reads:none"
WIDE_FITS = ("ridge", "choice")
WIDE_ITEM_READINGS = ("weights", "presence")
COPY_PREFIX = "\x00history-dropped:"
WIDE_SPREAD_ROWS = 5000  # fitted rows the wide part's spread is matched on

LOSSES = ("warp", "bpr", "warp-kos", "logistic")
APPEAL_SOURCES = ("open_rate", "engagement")
SCHEDULES = ("adagrad", "adadelta")
_STATE = (
    "item_embeddings", "item_embedding_gradients", "item_embedding_momentum",
    "item_biases", "item_bias_gradients", "item_bias_momentum",
    "user_embeddings", "user_embedding_gradients", "user_embedding_momentum",
    "user_biases", "user_bias_gradients", "user_bias_momentum",
)


class LightFMHybrid(Recommender):
    """LightFM (WARP / BPR / WARP-kOS / logistic) over identity + side features.

    Parameters mirror `lightfm.LightFM` plus how feature rows are built:
    - `user_identity` / `item_identity`: give each known user / item its own embedding.
    - `user_feature_weight` / `item_feature_weight`: weight of the side-feature block relative to the
      identity feature (1.0 = equal footing).
    - `normalize_features`: L1-normalise each row's side-feature block first, so a row's features
      sum to the feature weight however many are active.
    - `use_weights`: pass interaction values as sample weights (rescaled to mean 1, so the learning
      rate keeps its meaning) for the losses that accept them (all but warp-kos).
    - `use_negatives`: with the logistic loss, train on weak negatives as label -1.
    - `history_dropout`: share of the cardholders with a reading history who are trained a second
      time as if they had none (their `topic:` / `reads_level` columns removed, `reads:none` set), so
      the spend, menu and push-open features learn to place cardholders who never read (needs
      `user_identity=False`).
    - `item_appeal_weight`: how far each item's appeal to the average cardholder is set from its
      engagement rate instead of what the ranking loss learned: the model's mean score per item is
      replaced by `weight x (its spread over items) x` the standardised log of (cardholders who read
      or opened it + 1) per day it was on offer (needs `item_exposure_days`). WARP learns an item's
      bias from how often it is a positive, so an item offered for a week trails one offered for a
      quarter however much better it is liked; 0 keeps the learned biases.
    - `item_appeal_source`: what the appeal is read from. `engagement`: the rate above. `open_rate`
      (needs `item_sends` / `item_opens`; falls back to `engagement` without them): the logit of each
      item's push open rate, shrunk toward a prior regressed on that engagement rate with
      `open_rate_prior_sends` pseudo-sends (`recsys/models/appeal.py`), so pushed items are ranked by how
      often a push of them is opened and never-pushed ones by their engagement on that scale.
    - `wide_weight`: weight of a "wide" part beside the factorisation: per item, a ridge regression of
      its positives on the cardholder feature vector (columns standardised, L2 penalty `wide_l2` x
      the number of rows, fitted on the same rows as LightFM, history-dropped copies included), kept to
      its `wide_rank` leading singular directions and scaled so that at weight 1 its scores spread as
      much as the factorisation's. LightFM's rank-d embeddings share one low-dimensional space across
      items; the ridge is full rank over the features. 0 (the default) leaves it out.
    - `wide_fit`: what the wide part's slopes are. `ridge`: the ridge above. `choice`
      (`recsys/models/choice.py`; needs `positive_days` / `item_offer_days`, else the ridge): a
      conditional logit of which item each cardholder's first read or opened push of an item chose
      among the items on offer that day, on the features without reading history (`topic:`,
      `reads_level`, `reads:none`: the ones non-readers have), fitted on the cardholders themselves
      (no history-dropped copies), L2 penalty `wide_choice_l2` / 2 x |W|^2 on the mean
      log-likelihood, on a seeded sample of at most `wide_choice_max_users` cardholders with events
      (its fit grows with cardholders x items on offer); folded into the same factors.
    - `wide_choice_rank`: K > 0 adds to that logit's slopes a term A (item features C)^T of rank K
      (A [features, K], C [item features, K]), penalised by `wide_choice_rank_l2` / 2 x (|A|^2 +
      |C|^2), so that items share what their tags and kind say about who chooses them (an item
      rarely chosen gets its tags' slopes); 0 leaves it out.
    - `wide_choice_items`: how that term reads the item features. `weights`: as the feature builder
      weighs them (an item's tags share one unit, so an item with four tags has each at a quarter);
      `presence`: 1 for every feature an item has. Which one a catalogue's data supports differs
      between worlds; `recsys train` chooses it on the validation window (`wide_item_choices`).
    LightFM's Hogwild updates make runs with `num_threads > 1` not bit-for-bit repeatable; use
    `num_threads=1` where exact reproducibility matters.
    """

    kind: ClassVar[str] = "lightfm_hybrid"
    format_version: ClassVar[int] = 1
    libraries: ClassVar[tuple[str, ...]] = ("lightfm-next", "numpy", "scipy")

    def __init__(
        self,
        no_components: int = 64,
        loss: str = "warp",
        learning_rate: float = 0.05,
        learning_schedule: str = "adagrad",
        item_alpha: float = 0.0,
        user_alpha: float = 0.0,
        max_sampled: int = 10,
        k: int = 5,
        n: int = 10,
        epochs: int = 30,
        num_threads: int = 2,
        random_state: int = 42,
        user_identity: bool = True,
        item_identity: bool = True,
        user_feature_weight: float = 1.0,
        item_feature_weight: float = 1.0,
        normalize_features: bool = True,
        use_weights: bool = True,
        use_negatives: bool = True,
        history_dropout: float = 0.0,
        item_appeal_weight: float = 0.0,
        item_appeal_source: str = "engagement",
        open_rate_prior_sends: float = 50.0,
        wide_weight: float = 0.0,
        wide_l2: float = 1.0,
        wide_rank: int = 128,
        wide_fit: str = "ridge",
        wide_choice_l2: float = 0.1,
        wide_choice_max_users: int = 20_000,
        wide_choice_rank: int = 0,
        wide_choice_rank_l2: float = 0.01,
        wide_choice_items: str = "weights",
    ):
        if loss not in LOSSES:
            raise ModelError(f"loss {loss!r} is not one of {LOSSES}")
        if item_appeal_source not in APPEAL_SOURCES:
            raise ModelError(f"item_appeal_source {item_appeal_source!r} is not one of {APPEAL_SOURCES}")
        if wide_fit not in WIDE_FITS:
            raise ModelError(f"wide_fit {wide_fit!r} is not one of {WIDE_FITS}")
        if wide_choice_items not in WIDE_ITEM_READINGS:
            raise ModelError(f"wide_choice_items {wide_choice_items!r} is not one of {WIDE_ITEM_READINGS}")
        if not (np.isfinite(open_rate_prior_sends) and open_rate_prior_sends > 0):
            raise ModelError(f"open_rate_prior_sends must be a number > 0, got {open_rate_prior_sends}")
        if learning_schedule not in SCHEDULES:
            raise ModelError(f"learning_schedule {learning_schedule!r} is not one of {SCHEDULES}")
        check_at_least_one(no_components=no_components, epochs=epochs, num_threads=num_threads,
                           max_sampled=max_sampled, wide_rank=wide_rank,
                           wide_choice_max_users=wide_choice_max_users)
        for name, value in (("learning_rate", learning_rate), ("item_alpha", item_alpha),
                            ("user_alpha", user_alpha), ("user_feature_weight", user_feature_weight),
                            ("item_feature_weight", item_feature_weight),
                            ("item_appeal_weight", item_appeal_weight), ("wide_weight", wide_weight),
                            ("wide_l2", wide_l2), ("wide_choice_l2", wide_choice_l2),
                            ("wide_choice_rank_l2", wide_choice_rank_l2)):
            if not np.isfinite(value) or value < 0:
                raise ModelError(f"{name} must be a finite number >= 0, got {value}")
        self.no_components = int(no_components)
        self.loss = loss
        self.learning_rate = float(learning_rate)
        self.learning_schedule = learning_schedule
        self.item_alpha = float(item_alpha)
        self.user_alpha = float(user_alpha)
        self.max_sampled = int(max_sampled)
        self.k = int(k)
        self.n = int(n)
        self.epochs = int(epochs)
        self.num_threads = int(num_threads)
        self.random_state = int(random_state)
        self.user_identity = bool(user_identity)
        self.item_identity = bool(item_identity)
        self.user_feature_weight = float(user_feature_weight)
        self.item_feature_weight = float(item_feature_weight)
        self.normalize_features = bool(normalize_features)
        self.use_weights = bool(use_weights)
        self.use_negatives = bool(use_negatives)
        if not 0.0 <= history_dropout <= 1.0:
            raise ModelError(f"history_dropout must be in [0, 1], got {history_dropout}")
        if history_dropout and user_identity:
            raise ModelError("history_dropout needs user_identity=False (copies have no identity)")
        self.history_dropout = float(history_dropout)
        self.item_appeal_weight = float(item_appeal_weight)
        self.item_appeal_source = item_appeal_source
        self.open_rate_prior_sends = float(open_rate_prior_sends)
        self.wide_weight = float(wide_weight)
        self.wide_l2 = float(wide_l2)
        self.wide_rank = int(wide_rank)
        self.wide_fit = wide_fit
        self.wide_choice_l2 = float(wide_choice_l2)
        self.wide_choice_max_users = int(wide_choice_max_users)
        if wide_choice_rank < 0:
            raise ModelError(f"wide_choice_rank must be >= 0, got {wide_choice_rank}")
        self.wide_choice_rank = int(wide_choice_rank)
        self.wide_choice_rank_l2 = float(wide_choice_rank_l2)
        self.wide_choice_items = wide_choice_items
        self._item_shift: np.ndarray | None = None
        self._ridge: RidgeFactors | None = None
        self._wide_scale = 0.0
        self._model = None
        self._n_users = 0
        self._n_user_features = 0
        self._item_factors: np.ndarray | None = None
        self._item_feature_matrix: sp.csr_matrix | None = None

    @property
    def is_fitted(self) -> bool:
        return self._model is not None and self._model.item_embeddings is not None

    @property
    def lightfm(self) -> Any:
        """The underlying `lightfm.LightFM` (for inspection; do not refit it directly)."""
        self._check_fitted()
        return self._model

    def _new_lightfm(self):
        from lightfm import LightFM

        return LightFM(
            no_components=self.no_components, k=self.k, n=self.n,
            learning_schedule=self.learning_schedule, loss=self.loss,
            learning_rate=self.learning_rate, item_alpha=self.item_alpha, user_alpha=self.user_alpha,
            max_sampled=self.max_sampled, random_state=self.random_state,
        )

    def _feature_block(self, features: sp.csr_matrix, weight: float) -> sp.csr_matrix:
        block = sp.csr_matrix(features, dtype=np.float32)
        if self.normalize_features and block.nnz:
            sums = np.asarray(abs(block).sum(axis=1)).ravel()
            sums[sums == 0] = 1.0
            block = sp.csr_matrix(sp.diags((weight / sums).astype(np.float32)) @ block)
        elif weight != 1.0:
            block = block * np.float32(weight)
        return block

    def _full_features(self, features: sp.csr_matrix, identity: bool, weight: float) -> sp.csr_matrix:
        """[identity | weighted side features] rows for every fitted user or item."""
        blocks = []
        if identity:
            blocks.append(sp.identity(features.shape[0], dtype=np.float32, format="csr"))
        if features.shape[1]:
            blocks.append(self._feature_block(features, weight))
        if not blocks:
            raise ModelError("no features at all: enable the identity features or provide side features")
        return sp.csr_matrix(sp.hstack(blocks, format="csr"), dtype=np.float32)

    def _training_pairs(self, data: TrainingMatrices) -> tuple[sp.coo_matrix, sp.coo_matrix | None]:
        positives = data.interactions_csr()
        weights = positives.data
        labels = sp.csr_matrix((np.ones_like(weights), positives.indices, positives.indptr),
                               shape=positives.shape)
        if self.loss == "logistic" and self.use_negatives and data.negatives is not None:
            negatives = sp.csr_matrix(data.negatives, dtype=np.float32)
            negatives.sum_duplicates()
            # an item both opened and ignored counts as positive
            negatives = negatives - negatives.multiply(positives > 0)
            negatives.eliminate_zeros()
            labels = sp.csr_matrix(labels - (negatives > 0).astype(np.float32))
            positives = sp.csr_matrix(positives + negatives)
        labels = labels.tocoo()
        if not self.use_weights or self.loss == "warp-kos":
            return labels, None
        weights_coo = positives.tocoo()
        # same structure as `labels` (both csr -> coo from identical sparsity patterns)
        order_matches = np.array_equal(weights_coo.row, labels.row) and np.array_equal(
            weights_coo.col, labels.col)
        if not order_matches:
            raise ModelError("internal: interaction and weight patterns differ")
        scaled = (weights_coo.data / weights_coo.data.mean()).astype(np.float32)
        return labels, sp.coo_matrix((scaled, (labels.row, labels.col)), shape=labels.shape)

    def with_history_dropped(self, data: TrainingMatrices) -> TrainingMatrices:
        """`data` plus, for a seeded `history_dropout` share of the cardholders with reading-history
        features, a copy of them with those features removed and the same interactions."""
        names = data.user_feature_names
        history = np.asarray([name.startswith(HISTORY_PREFIXES) for name in names], dtype=bool)
        features = sp.csr_matrix(data.user_features, dtype=np.float32)
        if not self.history_dropout or not history.any():
            return data
        has_history = np.flatnonzero(np.asarray(features[:, np.flatnonzero(history)].sum(axis=1)).ravel() > 0)
        rng = np.random.default_rng(self.random_state)
        chosen = np.sort(rng.choice(has_history, size=int(round(self.history_dropout * has_history.size)),
                                    replace=False))
        if not chosen.size:
            return data
        copies = sp.csr_matrix(features[chosen] @ sp.diags((~history).astype(np.float32)))
        if NO_HISTORY in names:
            flag = sp.csr_matrix((np.ones(chosen.size, np.float32),
                                  (np.arange(chosen.size), np.full(chosen.size, names.index(NO_HISTORY)))),
                                 shape=copies.shape)
            copies = sp.csr_matrix(copies + flag)
        copies.eliminate_zeros()
        positives = data.interactions_csr()
        negatives = None if data.negatives is None else sp.vstack(
            [sp.csr_matrix(data.negatives), sp.csr_matrix(data.negatives)[chosen]]).tocoo()
        ids = data.users.ids  # one copy: the property copies every id on each access
        days = None if data.positive_days is None else sp.vstack(
            [sp.csr_matrix(data.positive_days), sp.csr_matrix(data.positive_days)[chosen]]).tocoo()
        return replace(
            data, users=IdIndex([*ids, *(f"{COPY_PREFIX}{ids[i]}" for i in chosen)]),
            interactions=sp.vstack([positives, positives[chosen]]).tocoo(), negatives=negatives,
            user_features=sp.csr_matrix(sp.vstack([features, copies])), user_segments=None,
            positive_days=days)

    def fit(self, data: TrainingMatrices, callback: EpochCallback | None = None) -> Self:
        n_users = data.n_users
        original = data
        data = self.with_history_dropped(data)
        interactions, sample_weight = self._training_pairs(data)
        user_features = self._full_features(data.user_features, self.user_identity, self.user_feature_weight)
        item_features = self._full_features(data.item_features, self.item_identity, self.item_feature_weight)
        self._model = self._new_lightfm()
        self._n_users = n_users
        self._n_user_features = data.user_features.shape[1]
        self._item_factors = None
        self._item_shift = None
        self._item_feature_matrix = item_features
        self._ridge = None
        self._wide_scale = 0.0
        logger.info(
            "fitting LightFM %s: %d users, %d items, %d interactions, %d user / %d item feature columns",
            self.loss, data.n_users, data.n_items, interactions.nnz, user_features.shape[1],
            item_features.shape[1],
        )
        for epoch in range(1, self.epochs + 1):
            self._model.fit_partial(
                interactions, user_features=user_features, item_features=item_features,
                sample_weight=sample_weight, epochs=1, num_threads=self.num_threads,
            )
            self._item_factors = None
            if callback is not None:
                callback(epoch, self)
        if self.wide_weight:
            self.set_wide(self.wide_weight, original, data)
        else:
            self.set_item_appeal(self.item_appeal_weight, original)
        return self

    def embedding_state(self) -> dict[str, np.ndarray]:
        """A copy of the learned LightFM arrays (e.g. after an epoch), for `rewind`."""
        self._check_fitted()
        return {name: getattr(self._model, name).copy() for name in _STATE}

    def rewind(self, state: dict[str, np.ndarray], epochs: int, data: TrainingMatrices) -> None:
        """Go back to the LightFM arrays `state` taken after epoch `epochs` of a fit on `data` (so one
        fit can be scored at every epoch count), then re-derive the wide part and the item appeal."""
        self._check_fitted()
        for name in _STATE:
            setattr(self._model, name, state[name].copy())
        self.epochs = int(epochs)
        self._item_shift = None
        self._item_factors = None
        self._rescale_wide(data)
        self.set_item_appeal(self.item_appeal_weight, data)

    def set_wide(self, weight: float, original: TrainingMatrices,
                 rows: TrainingMatrices | None = None) -> None:
        """Set `wide_weight` of the fitted model without refitting LightFM, then re-derive the item
        appeal on `original` (the data the model was fitted on). The ridge is solved once, on `rows`
        (the fitted rows with their history-dropped copies; rebuilt from `original` when not given)."""
        self._check_fitted()
        if not np.isfinite(weight) or weight < 0:
            raise ModelError(f"wide_weight must be a finite number >= 0, got {weight}")
        self.wide_weight = float(weight)
        if weight and self._ridge is None and self._n_user_features:
            self._ridge = self._fit_wide(original, rows)
            self._wide_scale = 0.0
        if weight and not self._wide_scale:
            self._rescale_wide(original)
        self.set_item_appeal(self.item_appeal_weight, original)

    def set_wide_items(self, reading: str) -> None:
        """Set `wide_choice_items` of the fitted model; the wide part is fitted again by the next `set_wide`
        with a weight above 0."""
        if reading not in WIDE_ITEM_READINGS:
            raise ModelError(f"wide_choice_items {reading!r} is not one of {WIDE_ITEM_READINGS}")
        if reading != self.wide_choice_items:
            self.wide_choice_items = reading
            self._ridge = None
            self._wide_scale = 0.0

    @property
    def reads_item_features(self) -> bool:
        """Whether the wide part depends on `wide_choice_items` (a choice logit with a low-rank term)."""
        return self.wide_fit == "choice" and self.wide_choice_rank > 0

    def _fit_wide(self, original: TrainingMatrices, rows: TrainingMatrices | None) -> RidgeFactors:
        """The wide part's factors as `wide_fit` says (the ridge when the choice lacks its days)."""
        if self.wide_fit == "choice" and original.positive_days is not None:
            keep = np.asarray([not name.startswith(HISTORY_PREFIXES) and name != NO_HISTORY
                               for name in original.user_feature_names], dtype=bool)
            return fit_choice_factors(original.user_features, original.positive_days,
                                      original.item_offer_days, self.wide_choice_l2, self.wide_rank, keep,
                                      self.wide_choice_max_users, self.random_state,
                                      self.wide_choice_rank, original.item_features, self.wide_choice_rank_l2,
                                      self.wide_choice_items == "presence")
        if self.wide_fit == "choice":
            logger.warning("wide_fit choice needs positive_days and item_offer_days; fitting the ridge")
        rows = rows if rows is not None else self.with_history_dropped(original)
        return fit_ridge(rows.user_features, rows.interactions, self.wide_l2, self.wide_rank)

    def _rescale_wide(self, data: TrainingMatrices) -> None:
        """Scale the wide part so that at weight 1 its scores spread as much as the factorisation's
        (item appeal left out) over the first fitted cardholders."""
        self._wide_scale = 0.0
        if self._ridge is None:
            return
        self._item_shift = None
        sample = sp.csr_matrix(data.user_features[: min(data.n_users, WIDE_SPREAD_ROWS)])
        learned = self.user_factors(np.arange(sample.shape[0]), sample) @ self._compute_item_factors(
            self._item_feature_matrix).T
        spread = self._ridge.spread(sample)
        self._wide_scale = float(learned.std() / spread) if spread > 0 else 0.0

    def set_item_appeal(self, weight: float, data: TrainingMatrices, source: str | None = None) -> None:
        """Set `item_appeal_weight` (and `item_appeal_source` when given) of the fitted model without
        refitting; `data` is what it was fitted on (choosing them on validation data costs one fit, not
        one per option)."""
        self._check_fitted()
        if not np.isfinite(weight) or weight < 0:
            raise ModelError(f"item_appeal_weight must be a finite number >= 0, got {weight}")
        if source is not None and source not in APPEAL_SOURCES:
            raise ModelError(f"item_appeal_source {source!r} is not one of {APPEAL_SOURCES}")
        self.item_appeal_weight = float(weight)
        self.item_appeal_source = source or self.item_appeal_source
        self._item_shift = None
        self._item_factors = self._compute_item_factors(self._item_feature_matrix)
        self._item_shift = self._appeal_shift(data)
        self._item_factors = self._compute_item_factors(self._item_feature_matrix)

    def appeal_rate(self, data: TrainingMatrices) -> np.ndarray:
        """Per item, the estimate the item appeal scales (`item_appeal_source`, `recsys.models.appeal`);
        `data` must carry exposure days."""
        engaged = np.diff(data.interactions_csr().tocsc().indptr)
        rate = engagement_rate(engaged, data.item_exposure_days)
        if self.item_appeal_source == "open_rate" and data.item_sends is not None:
            opened = open_rate_logit(data.item_sends, data.item_opens, rate, self.open_rate_prior_sends)
            rate = rate if opened is None else opened
        return rate

    def _appeal_shift(self, data: TrainingMatrices) -> np.ndarray | None:
        """Per item: what moves its mean score over the fitted cardholders to its scaled engagement
        rate (see `item_appeal_weight`); None when off or without exposure days."""
        if not self.item_appeal_weight or data.item_exposure_days is None or data.n_items < 2:
            return None
        rate = self.appeal_rate(data)
        users = self.user_factors(np.arange(data.n_users), data.user_features)
        mean_score = (self._item_factors @ users.mean(axis=0)).astype(np.float64)
        spread, rate_spread = mean_score.std(), rate.std()
        if not (spread > 0 and rate_spread > 0):
            return None
        target = self.item_appeal_weight * spread * (rate - rate.mean()) / rate_spread
        return (target - (mean_score - mean_score.mean())).astype(np.float32)

    def _compute_item_factors(self, item_features: sp.csr_matrix) -> np.ndarray:
        model = self._model
        embeddings = np.asarray(item_features @ model.item_embeddings, dtype=np.float32)
        biases = np.asarray(item_features @ model.item_biases, dtype=np.float32)
        if self._item_shift is not None:
            biases = biases + self._item_shift
        ones = np.ones((embeddings.shape[0], 1), dtype=np.float32)
        blocks = [embeddings, ones, biases[:, None]]
        if self._wide_active:
            factor = np.float32(self.wide_weight * self._wide_scale)
            blocks[2] = (biases + factor * self._ridge.offset)[:, None]
            blocks.append(factor * self._ridge.items)
        return np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)

    @property
    def _wide_active(self) -> bool:
        return self._ridge is not None and self.wide_weight > 0 and self._wide_scale > 0

    def item_factors(self) -> np.ndarray:
        self._check_fitted()
        if self._item_factors is None:
            self._item_factors = self._compute_item_factors(self._item_feature_matrix)
        return self._item_factors

    def user_factors(self, user_index: np.ndarray, user_features: sp.csr_matrix) -> np.ndarray:
        """[embedding, bias, 1] per user: the same sum LightFM's `get_user_representations` computes.

        Known users (index >= 0) add their identity embedding (when `user_identity`); unknown users
        (-1) are represented by their side features alone.
        """
        self._check_fitted()
        index, features = check_user_inputs(user_index, user_features, self._n_users, self._n_user_features)
        model = self._model
        offset = self._n_users if self.user_identity else 0
        embeddings = np.zeros((index.size, self.no_components), dtype=np.float32)
        biases = np.zeros(index.size, dtype=np.float32)
        if self.user_identity:
            known = index >= 0
            embeddings[known] = model.user_embeddings[index[known]]
            biases[known] = model.user_biases[index[known]]
        if self._n_user_features:
            block = self._feature_block(features, self.user_feature_weight)
            embeddings += block @ model.user_embeddings[offset:]
            biases += block @ model.user_biases[offset:]
        ones = np.ones((index.size, 1), dtype=np.float32)
        blocks = [embeddings, biases[:, None], ones]
        if self._wide_active:
            blocks.append(self._ridge.user_block(features))
        return np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        state = {name: getattr(self._model, name) for name in _STATE}
        state["item_factors"] = self.item_factors()
        if self._item_shift is not None:
            state["item_shift"] = self._item_shift
        if self._wide_active:
            state |= {"wide_projection": self._ridge.projection, "wide_items": self._ridge.items,
                      "wide_offset": self._ridge.offset, "wide_scale": np.float64(self._wide_scale)}
        return state

    def _extra(self) -> dict[str, Any]:
        return {"n_users": self._n_users, "n_user_features": self._n_user_features}

    def _restore(self, arrays: Mapping[str, np.ndarray], extra: Mapping[str, Any]) -> None:
        model = self._new_lightfm()
        for name in _STATE:
            setattr(model, name, np.ascontiguousarray(arrays[name], dtype=np.float32))
        self._model = model
        self._n_users = int(extra["n_users"])
        self._n_user_features = int(extra["n_user_features"])
        self._item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        shift = arrays.get("item_shift")
        self._item_shift = None if shift is None else np.asarray(shift, dtype=np.float32)
        if "wide_projection" in arrays:
            self._ridge = RidgeFactors(np.asarray(arrays["wide_projection"], dtype=np.float32),
                                       np.asarray(arrays["wide_items"], dtype=np.float32),
                                       np.asarray(arrays["wide_offset"], dtype=np.float32))
            self._wide_scale = float(arrays["wide_scale"])
