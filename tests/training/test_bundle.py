"""Model bundle round trip, eligibility rules, batch ranking, and cold-start personalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.bundle_inputs import features_for, item_metadata, rank_dataset, user_factors_for
from features.loader import Dataset, load_dataset
from features.pipeline import build_training_matrices
from recsys.bundle import BundleError, ModelBundle
from recsys.models.lightfm_hybrid import LightFMHybrid
from tests.features.handmade import write_contract_tables
from training.config import TrainConfig

AS_OF = pd.Timestamp("2024-06-30T00:00:00Z")


def make_bundle(dataset: Dataset, as_of: pd.Timestamp, model=None) -> ModelBundle:
    matrices, builder = build_training_matrices(dataset, as_of)
    model = model or LightFMHybrid(no_components=8, epochs=5, num_threads=1)
    model.fit(matrices)
    return ModelBundle(
        model=model, users=matrices.users, items=matrices.items, feature_state=builder.to_dict(),
        item_meta=item_metadata(dataset.content, matrices.items), user_segments=matrices.user_segments,
        as_of=as_of, metrics={"ndcg@10": 0.5}, user_features=matrices.user_features,
    )


def test_bundle_round_trip_gives_the_same_rankings(hand_made: Dataset, tmp_path: Path) -> None:
    bundle = make_bundle(hand_made, AS_OF)
    path = bundle.save(tmp_path / "out" / "bundle")
    loaded = ModelBundle.load(path)
    assert loaded.as_of == AS_OF and loaded.metrics == {"ndcg@10": 0.5}
    assert list(loaded.users.ids) == list(bundle.users.ids)
    assert list(loaded.items.ids) == list(bundle.items.ids)
    assert loaded.versions["qianmian"]
    assert json.loads((path / "bundle.json").read_text())["format_version"] == 1
    np.testing.assert_array_equal(loaded.model.item_factors(), bundle.model.item_factors())
    pd.testing.assert_frame_equal(rank_dataset(loaded, hand_made, AS_OF, 3),
                                  rank_dataset(bundle, hand_made, AS_OF, 3))
    # stored features serve known cardholders without the raw tables
    ids = np.array(["u1", "u2", "nobody"], dtype=object)
    np.testing.assert_allclose(user_factors_for(loaded, ids[:2]),
                               bundle.model.user_factors(np.array([0, 1]), bundle.user_features[:2]))
    assert features_for(loaded, ids)[2].nnz == 0
    # saving again replaces the directory atomically and leaves no staging directories behind
    bundle.save(path)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bundle"]


def test_incompatible_or_damaged_bundles_are_refused(hand_made: Dataset, tmp_path: Path) -> None:
    path = make_bundle(hand_made, AS_OF).save(tmp_path / "bundle")
    manifest = json.loads((path / "bundle.json").read_text())
    (path / "bundle.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="format version 99.*retrain"):
        ModelBundle.load(path)
    (path / "bundle.json").write_text(json.dumps(manifest))
    (path / "model" / "arrays.npz").unlink()
    with pytest.raises(BundleError, match="not a saved model"):
        ModelBundle.load(path)
    with pytest.raises(BundleError, match="not a model bundle"):
        ModelBundle.load(tmp_path / "nowhere")
    intact = make_bundle(hand_made, AS_OF).save(tmp_path / "intact")
    (intact / "bundle.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "as_of"}))
    with pytest.raises(BundleError, match="damaged or incomplete.*as_of"):
        ModelBundle.load(intact)


def test_ineligible_items_are_never_recommended(hand_made: Dataset) -> None:
    bundle = make_bundle(hand_made, AS_OF)
    recs = rank_dataset(bundle, hand_made, AS_OF, k=10)
    by_user = recs.groupby("user_id")["content_id"].apply(set).to_dict()
    everything = set(hand_made.content["content_id"])
    # expired (c_old), transactional (c_bill): nobody
    assert not any({"c_old", "c_bill"} & items for items in by_user.values())
    # platinum-only c_plat: only u2 (platinum) may get it
    assert "c_plat" in by_user["u2"] and "c_plat" not in by_user["u1"] and "c_plat" not in by_user["u3"]
    # already read or pushed: u1 read c_dine2, c_old and opened c_dine; u2 was pushed c_travel and c_dine
    assert by_user["u1"] == {"c_travel"}
    assert by_user["u2"] == {"c_dine2", "c_plat"}
    assert by_user["u3"] == everything - {"c_old", "c_bill", "c_plat"}
    assert list(recs.columns) == ["user_id", "rank", "content_id", "score"]
    for _, group in recs.groupby("user_id"):
        assert list(group["rank"]) == list(range(1, len(group) + 1))
        assert group["score"].is_monotonic_decreasing
    # before c_dine's validity window opens, nobody gets it
    early = rank_dataset(bundle, hand_made, pd.Timestamp("2023-12-01T00:00:00Z"), k=10)
    assert "c_dine" not in set(early["content_id"])


def test_cardholders_without_reads_are_personalised_by_their_spend(two_taste_dir: Path) -> None:
    dataset = load_dataset(two_taste_dir)
    model = TrainConfig().model.build()
    bundle = make_bundle(dataset, AS_OF, model=model)
    recs = rank_dataset(bundle, dataset, AS_OF, k=3)
    readers = set(dataset.article_reads["user_id"])
    cold = recs[~recs["user_id"].isin(readers)].copy()
    assert cold["user_id"].nunique() == 100
    number = cold["user_id"].str[1:].astype(int)
    cold["taste"] = np.where(number % 2 == 0, "dine", "trav")
    cold["match"] = cold["content_id"].str[:4] == cold["taste"]
    # spend alone separates the two groups: nearly every cold diner gets dining, every traveller travel
    assert cold["match"].mean() > 0.9
    firsts = cold[cold["rank"] == 1].groupby("taste")["content_id"].agg(lambda s: set(s.str[:4]))
    assert firsts["dine"] == {"dine"} and firsts["trav"] == {"trav"}


def test_cardholders_unknown_to_the_bundle_are_ranked_from_their_features(
        tmp_path: Path, hand_made_tables: dict[str, pd.DataFrame]) -> None:
    bundle = make_bundle(load_dataset(write_contract_tables(tmp_path / "old", hand_made_tables)), AS_OF)
    tables = {name: frame.copy() for name, frame in hand_made_tables.items()}
    tables["cardholders"].loc[len(tables["cardholders"])] = ["u9", 1992, "F", 2, "diamond", 5000.0,
                                                             "2024-06-01", "", ""]
    grown = load_dataset(write_contract_tables(tmp_path / "new", tables))
    recs = rank_dataset(bundle, grown, AS_OF, k=10)
    new = recs[recs["user_id"] == "u9"]
    # a card tier no training cardholder had: its own tier rules still apply (c_plat is platinum|diamond)
    assert set(new["content_id"]) == {"c_dine", "c_travel", "c_dine2", "c_plat"}
    assert np.isfinite(new["score"]).all()


def test_keeping_response_models_needs_a_bundle_that_has_them(hand_made: Dataset, tmp_path: Path) -> None:
    from training.response import ResponseFitError, kept_response_models

    path = make_bundle(hand_made, AS_OF).save(tmp_path / "no-response")
    with pytest.raises(ResponseFitError, match="no-response has no response models to keep"):
        kept_response_models(str(path), f"sqlite:///{tmp_path / 'unused.db'}")
