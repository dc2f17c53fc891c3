"""Learned cardholder segments: found on behaviour types with a known answer, deterministic for a seed,
saved in and restored from the model bundle, applied to cardholders unseen at fit time."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.builder import SEGMENT_PREFIX, FeatureBuilder
from features.bundle_inputs import feature_builder, item_metadata
from features.config import FeatureConfig, FeatureConfigError
from features.loader import Dataset, load_dataset
from features.pipeline import build_training_matrices
from recsys.bundle import ModelBundle
from recsys.models.popularity import PopularityRecommender
from tests.features.handmade import AS_OF, make_hand_made_tables, write_contract_tables

# three behaviour types, each a mix of codes and a menu need; grocery (5411) is everyone's habit
TYPES = {
    "diner": (("5812", "5814", "5411"), "points_mall"),
    "traveller": (("4511", "7011", "5411"), "installment"),
    "homemaker": (("5712", "5251", "5411"), "repayment"),
}
PER_TYPE = 12
CONFIG = FeatureConfig(mcc_min_users=1, learned_segments=3, learned_segment_seed=7)


def typed_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    """The hand-made tables with PER_TYPE cardholders of each type added, their purchases and menu clicks
    drawn (seeded) from their type's codes and need."""
    rng = np.random.default_rng(seed)
    tables = make_hand_made_tables()
    holders, tx, clicks = [], [], []
    for kind, (codes, need) in TYPES.items():
        for i in range(PER_TYPE):
            user = f"{kind}{i}"
            holders.append({"user_id": user, "card_tier": "gold"})
            for _ in range(int(rng.integers(4, 9))):
                day = pd.Timestamp("2024-06-29T12:00:00Z") - pd.Timedelta(days=int(rng.integers(0, 80)))
                tx.append({"user_id": user, "ts": day.isoformat(), "amount": float(rng.integers(20, 500)),
                           "mcc": codes[int(rng.integers(0, len(codes)))], "channel": "offline",
                           "overseas": "false"})
            clicks.append({"user_id": user, "ts": "2024-06-20T09:00:00Z", "menu_key": need})
    tables["cardholders"] = pd.concat([tables["cardholders"], pd.DataFrame(holders)], ignore_index=True)
    tables["transactions"] = pd.concat([tables["transactions"], pd.DataFrame(tx)], ignore_index=True)
    tables["menu_clicks"] = pd.concat([tables["menu_clicks"], pd.DataFrame(clicks)], ignore_index=True)
    return tables


@pytest.fixture
def typed(tmp_path: Path) -> Dataset:
    return load_dataset(write_contract_tables(tmp_path / "typed", typed_tables()))


def memberships(builder: FeatureBuilder, matrix) -> np.ndarray:
    columns = [j for j, name in enumerate(builder.user_feature_names) if name.startswith(SEGMENT_PREFIX)]
    return matrix[:, columns].toarray()


def test_segments_recover_the_behaviour_types_and_are_deterministic_for_a_seed(typed: Dataset) -> None:
    builder = FeatureBuilder(CONFIG).fit(typed, AS_OF)
    ids = np.asarray([f"{kind}{i}" for kind in TYPES for i in range(PER_TYPE)], dtype=object)
    shares = memberships(builder, builder.transform_users(typed, AS_OF, ids))
    assert shares.shape == (len(ids), 3)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-5)
    nearest = shares.argmax(axis=1).reshape(len(TYPES), PER_TYPE)
    # every cardholder of a type in one segment, a different one per type
    assert all(len(set(group)) == 1 for group in nearest)
    assert len(set(nearest[:, 0])) == len(TYPES)
    # u3 does nothing: no behaviour to place, so no membership
    assert memberships(builder, builder.transform_users(typed, AS_OF, ["u3"])).sum() == 0
    again = FeatureBuilder(CONFIG).fit(typed, AS_OF)
    assert again.to_dict() == builder.to_dict()


def test_segments_travel_in_the_bundle_and_place_a_cardholder_unseen_at_fit_time(
        typed: Dataset, tmp_path: Path) -> None:
    matrices, builder = build_training_matrices(typed, AS_OF, CONFIG)
    bundle = ModelBundle(
        model=PopularityRecommender().fit(matrices), users=matrices.users, items=matrices.items,
        feature_state=builder.to_dict(), item_meta=item_metadata(typed.content, matrices.items),
        user_segments=matrices.user_segments, as_of=AS_OF, metrics={}, user_features=matrices.user_features,
    )
    restored = feature_builder(ModelBundle.load(bundle.save(tmp_path / "bundle")))
    assert restored.user_feature_names == builder.user_feature_names
    assert (restored.transform_users(typed, AS_OF, matrices.users.ids) != matrices.user_features).nnz == 0
    # a traveller who joined after the fit lands in the travellers' segment
    tables = typed_tables()
    tables["cardholders"].loc[len(tables["cardholders"])] = {"user_id": "newcomer", "card_tier": "gold"}
    for code in ("4511", "7011", "7011"):
        tables["transactions"].loc[len(tables["transactions"])] = {
            "user_id": "newcomer", "ts": "2024-06-28T12:00:00Z", "amount": 800.0, "mcc": code,
            "channel": "online", "overseas": "true"}
    later = load_dataset(write_contract_tables(tmp_path / "later", tables))
    newcomer = memberships(restored, restored.transform_users(later, AS_OF, ["newcomer", "traveller0"]))
    assert newcomer[0].argmax() == newcomer[1].argmax()
    assert newcomer[0].max() > 0.5


def test_segments_family_weight_and_off_switch(typed: Dataset) -> None:
    weighted = FeatureBuilder(dataclasses.replace(CONFIG, learned_segment_weight=2.0)).fit(typed, AS_OF)
    shares = memberships(weighted, weighted.transform_users(typed, AS_OF, ["diner0"]))
    assert shares.sum() == pytest.approx(2.0, rel=1e-5)
    off = FeatureBuilder(dataclasses.replace(CONFIG, learned_segments=0)).fit(typed, AS_OF)
    assert not any(name.startswith(SEGMENT_PREFIX) for name in off.user_feature_names)
    state = json.loads(json.dumps(off.to_dict()))
    assert FeatureBuilder.from_dict(state).user_feature_names == off.user_feature_names


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("learned_segments", 1, "learned_segments must be a whole number >= 2, or 0"),
    ("learned_segments", -4, "learned_segments must be a whole number >= 2, or 0"),
    ("learned_segments", 2.5, "learned_segments must be a whole number"),
    ("learned_segment_temperature", 0.0, "learned_segment_temperature must be a finite number > 0"),
    ("learned_segment_weight", -1.0, "learned_segment_weight must be a finite number >= 0"),
    ("learned_segment_seed", 1.5, "learned_segment_seed must be a whole number"),
])
def test_bad_segment_settings_are_refused_with_the_remedy(setting: str, value: float, message: str) -> None:
    with pytest.raises(FeatureConfigError, match=message):
        FeatureConfig.from_dict({setting: value})
