"""The hidden response model of the synthetic world: how a cardholder answers a push.

Open probability of a push of item ``i`` to cardholder ``u``::

    logit = base_logit + engagement[u] + appeal[i] + taste_weight * (taste[u] . topics[i])
            - fatigue_per_push * max(0, recent - fatigue_free)      (marketing items only)
            + hour_weight * cos(2 pi (local send hour - peak_hour[u]) / 24)   (when the hour is given)
    p_open = sigmoid(logit)

``taste[u]`` is the cardholder's centred log-interest over the world's topics (spend categories and
finance topics, see `catalog.TOPICS`); ``topics[i]`` is the item's topic mix (non-negative, summing to
one for marketing items, all zero for transactional reminders, whose high ``appeal`` makes them opened
regardless of taste). ``recent`` is the number of marketing pushes the cardholder received in the
trailing ``window_days`` days, this one included. ``peak_hour[u]`` is the cardholder's preferred local
hour; the hour term averages to zero over the day, and probabilities asked without an hour (the
truth matrix) leave it out. ``hour_weight`` is 0 unless the world's scenario sets a time-of-day
preference.

Probability that the cardholder mutes or unfollows the account right after a push::

    logit = mute_base + mute_offset[u] + mute_per_push * recent - mute_relevance * (taste[u] . topics[i])

so mutes rise with push frequency and fall with relevance; transactional pushes carry no frequency
term. The generator draws the push log's opens and mutes from this same model, and the truth file
stores its parameters so evaluation and the caps simulation can ask it the same questions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ResponseParams:
    """Scalar parameters of the response model."""

    base_logit: float = -3.6
    taste_weight: float = 1.2
    fatigue_free: int = 4
    fatigue_per_push: float = 0.18
    mute_base: float = -7.3
    mute_per_push: float = 0.4
    mute_relevance: float = 0.5
    window_days: int = 30
    hour_weight: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        values = asdict(self)
        if not self.hour_weight:
            del values["hour_weight"]  # absent at 0, so worlds without it keep their exact truth files
        return values


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class ResponseModel:
    """Open and mute probabilities for (cardholder index, item index) pairs.

    Indices are positions in the truth's ``user_ids`` / ``content_ids``. Every method is vectorised:
    ``users`` and ``items`` (and ``recent_pushes``) broadcast against each other.
    """

    def __init__(
        self,
        params: ResponseParams,
        user_engagement: np.ndarray,
        user_taste: np.ndarray,
        user_mute_offset: np.ndarray,
        item_appeal: np.ndarray,
        item_topics: np.ndarray,
        item_transactional: np.ndarray,
        user_peak_hour: np.ndarray | None = None,
    ) -> None:
        n_users, n_topics = user_taste.shape
        if item_topics.shape[1] != n_topics:
            raise ValueError(
                f"item_topics has {item_topics.shape[1]} topics but user_taste has {n_topics}: "
                "build both from the same world"
            )
        if len(user_engagement) != n_users or len(user_mute_offset) != n_users:
            raise ValueError("user_engagement, user_taste and user_mute_offset must have one row per user")
        if params.hour_weight and (user_peak_hour is None or len(user_peak_hour) != n_users):
            raise ValueError("hour_weight is set: user_peak_hour must have one preferred hour per user")
        if not len(item_appeal) == len(item_topics) == len(item_transactional):
            raise ValueError("item_appeal, item_topics and item_transactional must have one row per item")
        self.params = params
        self.user_engagement = np.asarray(user_engagement, dtype=np.float32)
        self.user_taste = np.asarray(user_taste, dtype=np.float32)
        self.user_mute_offset = np.asarray(user_mute_offset, dtype=np.float32)
        self.item_appeal = np.asarray(item_appeal, dtype=np.float32)
        self.item_topics = np.asarray(item_topics, dtype=np.float32)
        self.item_transactional = np.asarray(item_transactional, dtype=bool)
        self.user_peak_hour = None if user_peak_hour is None else np.asarray(user_peak_hour, dtype=np.float32)

    @property
    def n_users(self) -> int:
        return len(self.user_engagement)

    @property
    def n_items(self) -> int:
        return len(self.item_appeal)

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Taste match taste[u] . topics[i] for broadcast pairs."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        return np.einsum("...k,...k->...", self.user_taste[users], self.item_topics[items])

    def base_logit(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Open logit without fatigue."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        return (
            self.params.base_logit
            + self.user_engagement[users]
            + self.item_appeal[items]
            + self.params.taste_weight * self.affinity(users, items)
        )

    def fatigue(self, items: np.ndarray, recent_pushes: np.ndarray | int) -> np.ndarray:
        excess = np.maximum(0, np.asarray(recent_pushes) - self.params.fatigue_free)
        return np.where(self.item_transactional[items], 0.0, self.params.fatigue_per_push * excess)

    def hour_effect(self, users: np.ndarray, local_hours: np.ndarray | float) -> np.ndarray:
        """The open-logit term of sending at ``local_hours`` (cardholder's local time, 0-24)."""
        if not self.params.hour_weight or self.user_peak_hour is None:
            return np.zeros(np.broadcast(np.asarray(users), np.asarray(local_hours)).shape)
        angle = (np.asarray(local_hours, dtype=np.float64) - self.user_peak_hour[np.asarray(users)]) / 24.0
        return self.params.hour_weight * np.cos(2.0 * np.pi * angle)

    def open_probability(
        self,
        users: np.ndarray,
        items: np.ndarray,
        recent_pushes: np.ndarray | int | None = None,
        local_hours: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """Probability that a push of item ``items`` to cardholder ``users`` is opened.

        ``recent_pushes``: marketing pushes the cardholder received in the trailing ``window_days``,
        this one included; None means no fatigue (the rested cardholder of the truth matrix).
        ``local_hours``: the cardholder's local send hour (0-24); None leaves the hour term out.
        """
        logit = self.base_logit(users, items)
        if recent_pushes is not None:
            logit = logit - self.fatigue(np.asarray(items), recent_pushes)
        if local_hours is not None and self.params.hour_weight:
            logit = logit + self.hour_effect(users, local_hours)
        return sigmoid(logit)

    def mute_probability(
        self, users: np.ndarray, recent_pushes: np.ndarray | int, items: np.ndarray | None = None
    ) -> np.ndarray:
        """Probability that the cardholder mutes or unfollows right after a push.

        Rises with ``recent_pushes`` (marketing pushes in the trailing window, this one included);
        with ``items`` given, relevant items are muted less and transactional ones carry no frequency
        term.
        """
        users = np.asarray(users)
        recent = np.asarray(recent_pushes, dtype=np.float64)
        logit = self.params.mute_base + self.user_mute_offset[users] + self.params.mute_per_push * recent
        if items is not None:
            items = np.asarray(items)
            logit = logit - self.params.mute_relevance * self.affinity(users, items)
            frequency = self.params.mute_per_push * recent
            logit = np.where(self.item_transactional[items], logit - frequency, logit)
        return sigmoid(logit)

    def draw(
        self,
        rng: np.random.Generator,
        users: np.ndarray,
        items: np.ndarray,
        recent_pushes: np.ndarray | int,
        local_hours: np.ndarray | float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Simulated answers to pushes: (opened, muted) boolean arrays, drawn independently."""
        opened = rng.random(np.shape(users)) < self.open_probability(users, items, recent_pushes, local_hours)
        muted = rng.random(np.shape(users)) < self.mute_probability(users, recent_pushes, items)
        return opened, muted

    def open_prob_matrix(self, users: np.ndarray | slice | None = None) -> np.ndarray:
        """float32 [n, n_items] rested open probabilities for a block of cardholders (all by default)."""
        rows = slice(None) if users is None else users
        logit = (
            self.params.base_logit
            + self.user_engagement[rows, None]
            + self.item_appeal[None, :]
            + self.params.taste_weight * (self.user_taste[rows] @ self.item_topics.T)
        )
        return sigmoid(logit.astype(np.float32)).astype(np.float32)
