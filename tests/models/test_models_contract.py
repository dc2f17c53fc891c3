"""Contract tests every Recommender passes, subclassed once per implementation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import IncompatibleModelError, ModelError, NotFittedError, Recommender, load_model
from recsys.models.appeal import engagement_rate, open_rate_logit
from recsys.models.implicit_peer import ImplicitPeer
from recsys.models.lightfm_hybrid import LightFMHybrid
from recsys.models.plain_hybrid import PlainHybrid
from recsys.models.popularity import PopularityRecommender
from recsys.ranking import Eligibility, top_k
from tests.models.conftest import make_checkerboard


class RecommenderContract:
    """The behaviour the ranking pipeline, training and serving rely on, for any model."""

    expected_epochs: int

    @classmethod
    def make(cls) -> Recommender:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, checkerboard) -> Recommender:
        return cls.make().fit(checkerboard.data)

    def known_users(self, board) -> tuple[np.ndarray, sp.csr_matrix]:
        return np.arange(board.data.n_users), board.data.user_features

    def test_recovers_the_checkerboard(self, fitted: Recommender, checkerboard) -> None:
        users, features = self.known_users(checkerboard)
        recommended, _ = top_k(fitted.user_factors(users, features), fitted.item_factors(), 5,
                               Eligibility(seen=checkerboard.seen))
        assert checkerboard.precision(recommended) == pytest.approx(1.0)

    def test_factors_are_float32_and_aligned(self, fitted: Recommender, checkerboard) -> None:
        users, features = self.known_users(checkerboard)
        user_factors = fitted.user_factors(users, features)
        item_factors = fitted.item_factors()
        assert user_factors.dtype == np.float32 and item_factors.dtype == np.float32
        assert user_factors.shape[0] == checkerboard.data.n_users
        assert item_factors.shape[0] == checkerboard.data.n_items
        assert user_factors.shape[1] == item_factors.shape[1]
        assert np.isfinite(user_factors).all() and np.isfinite(item_factors).all()
        np.testing.assert_allclose(fitted.scores(users[:3], features[:3]), user_factors[:3] @ item_factors.T)

    def test_unknown_users_get_finite_factors(self, fitted: Recommender, checkerboard) -> None:
        features = checkerboard.data.user_features[:4]
        factors = fitted.user_factors(np.full(4, -1), features)
        assert factors.shape == (4, fitted.item_factors().shape[1])
        assert np.isfinite(factors).all()

    def test_save_load_round_trip(self, fitted: Recommender, checkerboard, tmp_path) -> None:
        users, features = self.known_users(checkerboard)
        mixed = np.concatenate([users[:5], [-1, -1]])
        mixed_features = sp.vstack([features[:5], features[:2]]).tocsr()
        fitted.save(tmp_path / "model")
        loaded = load_model(tmp_path / "model")
        assert type(loaded) is type(fitted)
        assert loaded.params() == fitted.params()
        np.testing.assert_array_equal(loaded.item_factors(), fitted.item_factors())
        np.testing.assert_array_equal(loaded.user_factors(mixed, mixed_features),
                                      fitted.user_factors(mixed, mixed_features))
        manifest = json.loads((tmp_path / "model" / "model.json").read_text())
        assert manifest["kind"] == fitted.kind and manifest["libraries"]["numpy"]

    def test_saving_again_replaces_the_model(self, fitted: Recommender, tmp_path) -> None:
        fitted.save(tmp_path / "model")
        fitted.save(tmp_path / "model")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    def test_incompatible_format_is_refused(self, fitted: Recommender, tmp_path) -> None:
        fitted.save(tmp_path / "model")
        manifest_path = tmp_path / "model" / "model.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["format_version"] = fitted.format_version + 1
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(IncompatibleModelError, match="format version"):
            type(fitted).load(tmp_path / "model")

    def test_other_kind_and_missing_directory_are_refused(self, fitted: Recommender, tmp_path) -> None:
        other = PopularityRecommender if not isinstance(fitted, PopularityRecommender) else ImplicitPeer
        fitted.save(tmp_path / "model")
        with pytest.raises(IncompatibleModelError, match=f"holds a '{fitted.kind}' model, not"):
            other.load(tmp_path / "model")
        with pytest.raises(IncompatibleModelError, match="not a saved model"):
            load_model(tmp_path / "absent")

    def test_unknown_parameters_and_missing_state_are_refused(self, fitted: Recommender, tmp_path) -> None:
        fitted.save(tmp_path / "model")
        manifest_path = tmp_path / "model" / "model.json"
        manifest = json.loads(manifest_path.read_text())
        manifest_path.write_text(json.dumps({**manifest, "params": {**manifest["params"], "novel": 1}}))
        with pytest.raises(IncompatibleModelError, match="parameters this code does not take"):
            load_model(tmp_path / "model")
        manifest_path.write_text(json.dumps(manifest))
        with np.load(tmp_path / "model" / "arrays.npz") as arrays:
            kept = {name: arrays[name] for name in arrays.files[1:]}
        np.savez(tmp_path / "model" / "arrays.npz", **kept)
        with pytest.raises(IncompatibleModelError, match="lacks the saved state"):
            load_model(tmp_path / "model")

    def test_callback_is_called_after_every_epoch(self, checkerboard) -> None:
        calls: list[tuple[int, int]] = []
        model = self.make()
        model.fit(checkerboard.data, callback=lambda epoch, m: calls.append((epoch, id(m))))
        assert [epoch for epoch, _ in calls] == list(range(1, self.expected_epochs + 1))
        assert {model_id for _, model_id in calls} == {id(model)}

    def test_unfitted_model_refuses_to_score_or_save(self, tmp_path) -> None:
        model = self.make()
        with pytest.raises(NotFittedError, match=f"the {model.kind} model is not fitted"):
            model.item_factors()
        with pytest.raises(NotFittedError):
            model.user_factors(np.array([0]), sp.csr_matrix((1, 0), dtype=np.float32))
        with pytest.raises(NotFittedError):
            model.save(tmp_path / "model")

    def test_rejects_out_of_range_users(self, fitted: Recommender, checkerboard) -> None:
        features = checkerboard.data.user_features[:1]
        with pytest.raises(ModelError, match="outside"):
            fitted.user_factors(np.array([checkerboard.data.n_users]), features)
        with pytest.raises(ModelError, match="rows"):
            fitted.user_factors(np.array([0, 1]), features)


class TestLightFMHybridWarp(RecommenderContract):
    expected_epochs = 15

    @classmethod
    def make(cls) -> Recommender:
        return LightFMHybrid(no_components=8, epochs=15, num_threads=1, random_state=3)

    def test_scores_equal_lightfm_predict(self, fitted: LightFMHybrid, checkerboard) -> None:
        users = np.array([0, 1, 2, 3])
        features = checkerboard.data.user_features[users]
        lightfm_users = sp.hstack([sp.identity(checkerboard.data.n_users, format="csr"),
                                   checkerboard.data.user_features]).tocsr()
        lightfm_items = sp.hstack([sp.identity(checkerboard.data.n_items, format="csr"),
                                   checkerboard.data.item_features]).tocsr()
        n_items = checkerboard.data.n_items
        predicted = fitted.lightfm.predict(
            np.repeat(users, n_items).astype(np.int32),
            np.tile(np.arange(n_items), users.size).astype(np.int32),
            user_features=lightfm_users, item_features=lightfm_items,
        ).reshape(users.size, n_items)
        np.testing.assert_allclose(fitted.scores(users, features), predicted, rtol=1e-4, atol=1e-4)

    def test_unknown_users_are_placed_by_features(self, fitted: LightFMHybrid, checkerboard) -> None:
        features = checkerboard.data.user_features[:20]
        factors = fitted.user_factors(np.full(20, -1), features)
        recommended, _ = top_k(factors, fitted.item_factors(), 5)
        camps = checkerboard.item_camp[recommended]
        assert (camps == checkerboard.user_camp[:20, None]).mean() >= 0.95
        embeddings = fitted.lightfm.user_embeddings[checkerboard.data.n_users:]
        np.testing.assert_allclose(factors[:, :-2], features.toarray() @ embeddings, rtol=1e-5, atol=1e-6)

    def test_rejects_feature_columns_of_another_builder(self, fitted: LightFMHybrid) -> None:
        with pytest.raises(ModelError, match="columns"):
            fitted.user_factors(np.array([0]), sp.csr_matrix((1, 5), dtype=np.float32))

    def test_invalid_parameters_are_named(self) -> None:
        with pytest.raises(ModelError, match="loss"):
            LightFMHybrid(loss="hinge")
        with pytest.raises(ModelError, match="no_components"):
            LightFMHybrid(no_components=0)


class TestLightFMHybridLogistic(RecommenderContract):
    expected_epochs = 20

    @classmethod
    def make(cls) -> Recommender:
        return LightFMHybrid(no_components=8, loss="logistic", learning_rate=0.05, epochs=20, num_threads=1,
                             random_state=3)

    def test_weak_negatives_are_used(self, checkerboard) -> None:
        board = checkerboard
        other_camp = sp.coo_matrix(
            (board.user_camp[:, None] != board.item_camp[None, :]).astype(np.float32))
        data = type(board.data)(**{**board.data.__dict__, "negatives": other_camp})
        with_negatives = self.make().fit(data)
        without = LightFMHybrid(**{**with_negatives.params(), "use_negatives": False}).fit(data)
        users = np.arange(board.data.n_users)
        scores_with = with_negatives.scores(users, board.data.user_features)
        scores_without = without.scores(users, board.data.user_features)
        assert not np.allclose(scores_with, scores_without)
        wrong_camp = other_camp.toarray() > 0
        assert scores_with[wrong_camp].mean() < scores_without[wrong_camp].mean()


class TestPopularity(RecommenderContract):
    expected_epochs = 1

    @classmethod
    def make(cls) -> Recommender:
        return PopularityRecommender()

    def test_unknown_users_and_segments_get_overall_popularity(self, fitted: PopularityRecommender) -> None:
        factors = fitted.user_factors(np.array([-1]), sp.csr_matrix((1, 2), dtype=np.float32))
        assert factors[0, 0] == 1.0 and factors[0, 1:].sum() == 0
        assert fitted.segments == ("a", "b")
        np.testing.assert_array_equal(fitted.segment_factors(["b", "zzz", None]).argmax(axis=1), [2, 0, 0])

    def test_overall_ranking_follows_counts(self) -> None:
        from recsys.matrices import TrainingMatrices

        counts = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]], dtype=np.float32)
        model = PopularityRecommender(by_segment=False).fit(TrainingMatrices.from_interactions(counts))
        recommended, _ = top_k(model.user_factors(np.array([-1]), sp.csr_matrix((1, 0))),
                               model.item_factors(), 4)
        np.testing.assert_array_equal(recommended[0], [0, 1, 2, 3])


class TestImplicitAls(RecommenderContract):
    expected_epochs = 10

    @classmethod
    def make(cls) -> Recommender:
        return ImplicitPeer(algorithm="als", factors=16, iterations=10, regularization=1.0, random_state=3)

    def test_unknown_users_get_the_mean_factor(self, fitted: ImplicitPeer, checkerboard) -> None:
        known = fitted.user_factors(np.arange(checkerboard.data.n_users), checkerboard.data.user_features)
        unknown = fitted.user_factors(np.array([-1]), checkerboard.data.user_features[:1])
        np.testing.assert_allclose(unknown[0], known.mean(axis=0), rtol=1e-5, atol=1e-6)


class TestImplicitBpr(RecommenderContract):
    expected_epochs = 60

    @classmethod
    def make(cls) -> Recommender:
        return ImplicitPeer(algorithm="bpr", factors=8, iterations=60, learning_rate=0.05, num_threads=1,
                            random_state=3)


class TestPlainHybrid(RecommenderContract):
    expected_epochs = 15

    @pytest.fixture(scope="class")
    @classmethod
    def checkerboard(cls):
        # the plain hybrid reads the builder's card tier and tag columns by name
        board = make_checkerboard()
        data = dataclasses.replace(board.data, user_feature_names=("card_tier=a", "card_tier=b"),
                                   item_feature_names=("tag:a", "tag:b"))
        return dataclasses.replace(board, data=data)

    @classmethod
    def make(cls) -> Recommender:
        return PlainHybrid(no_components=8, epochs=15, num_threads=1, random_state=3)

    def test_reads_only_its_raw_columns_and_ignores_their_scale(self, checkerboard) -> None:
        scaled = dataclasses.replace(checkerboard.data, user_features=checkerboard.data.user_features * 3.0)
        a = self.make().fit(checkerboard.data)
        b = self.make().fit(scaled)
        users = np.arange(6)
        np.testing.assert_allclose(a.user_factors(users, checkerboard.data.user_features[users]),
                                   b.user_factors(users, scaled.user_features[users]), rtol=1e-5, atol=1e-6)
        with pytest.raises(ModelError, match="columns"):
            a.user_factors(np.array([0]), sp.csr_matrix((1, 5), dtype=np.float32))
        unnamed = dataclasses.replace(checkerboard.data, user_feature_names=("x", "y"))
        with pytest.raises(ModelError, match="no mcc, menu or card_tier"):
            self.make().fit(unnamed)


def reading_history_board():
    """The checkerboard where the first half of the cardholders also show their camp in read topics."""
    board = make_checkerboard()
    n = board.data.n_users
    reader = np.arange(n) < n // 2
    camp = board.user_camp
    topics = np.column_stack([(camp == 0) & reader, (camp == 1) & reader]).astype(np.float32)
    features = sp.csr_matrix(np.column_stack([board.data.user_features.toarray(), topics, ~reader]),
                             dtype=np.float32)
    data = dataclasses.replace(board.data, user_features=features,
                               user_feature_names=("spend:a", "spend:b", "topic:a", "topic:b", "reads:none"))
    return dataclasses.replace(board, data=data)


class TestLightFMHybridHistoryDropout(RecommenderContract):
    expected_epochs = 15

    @pytest.fixture(scope="class")
    @classmethod
    def checkerboard(cls):
        return reading_history_board()

    @classmethod
    def make(cls) -> Recommender:
        return LightFMHybrid(no_components=8, epochs=15, num_threads=1, random_state=3, user_identity=False,
                             history_dropout=0.5)

    def test_copies_lose_their_reading_history_and_keep_their_interactions(self, checkerboard) -> None:
        data = checkerboard.data
        augmented = self.make().with_history_dropped(data)
        n = data.n_users
        copies = augmented.n_users - n
        assert copies == round(0.5 * (n // 2))
        features = augmented.user_features.toarray()
        np.testing.assert_array_equal(features[:n], data.user_features.toarray())
        assert (features[n:, 2:4] == 0).all() and (features[n:, 4] == 1).all()
        originals = data.users.index_of([user_id.split(":", 1)[1] for user_id in augmented.users.ids[n:]])
        assert (originals < n // 2).all()
        np.testing.assert_array_equal(features[n:, :2], features[originals, :2])
        positives = augmented.interactions_csr().toarray()
        np.testing.assert_array_equal(positives[n:], data.interactions_csr().toarray()[originals])
        # seeded: the same copies every time; and the fitted model still has the original users only
        again = self.make().with_history_dropped(data)
        assert list(again.users.ids) == list(augmented.users.ids)
        with pytest.raises(ModelError, match="outside"):
            self.make().fit(data).user_factors(np.array([n]), data.user_features[:1])

    def test_copies_read_the_ids_once_whatever_the_number_of_copies(self, checkerboard, monkeypatch) -> None:
        # `IdIndex.ids` copies every id: read once per copy, it made the copies quadratic in the
        # cardholders (11 s of a 100k refit)
        from recsys.ids import IdIndex

        reads = []
        original = IdIndex.ids
        monkeypatch.setattr(IdIndex, "ids", property(lambda index: reads.append(1) or original.fget(index)))
        augmented = self.make().with_history_dropped(checkerboard.data)
        assert augmented.n_users > checkerboard.data.n_users + 1
        assert len(reads) == 1

    def test_needs_feature_only_cardholders(self) -> None:
        with pytest.raises(ModelError, match="user_identity=False"):
            LightFMHybrid(history_dropout=0.5)
        with pytest.raises(ModelError, match="history_dropout"):
            LightFMHybrid(history_dropout=1.5, user_identity=False)


def test_ridge_labels_solve_the_standardised_ridge_and_positives_are_their_0_1_case() -> None:
    from recsys.models.wide import fit_ridge, fit_ridge_labels

    features = sp.csr_matrix(np.array([[-1.0], [1.0], [-1.0], [1.0]]))
    labels = np.array([[0.0, 2.0], [1.0, 2.0], [0.0, 2.0], [3.0, 2.0]])
    ridge = fit_ridge_labels(features, labels, l2=1.0, max_rank=2)
    # item 0: slope = x'(y - mean y) / (x'x + l2 n) = (1 + 3) / (4 + 4); item 1 is constant, so flat
    np.testing.assert_allclose((ridge.user_block(features) @ ridge.items.T + ridge.offset)[:, 0],
                               [-0.5, 0.5, -0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose((ridge.user_block(features) @ ridge.items.T + ridge.offset)[:, 1], 0.0,
                               atol=1e-6)
    positives = sp.csr_matrix(np.array([[0, 5.0], [2.0, 0], [0, 0], [1.0, 0]]))
    binary = fit_ridge(features, positives, l2=1.0, max_rank=2)
    as_labels = fit_ridge_labels(features, (positives > 0).toarray().astype(float), l2=1.0, max_rank=2)
    np.testing.assert_allclose(binary.user_block(features) @ binary.items.T + binary.offset,
                               as_labels.user_block(features) @ as_labels.items.T + as_labels.offset,
                               atol=1e-6)


def exposed_board():
    """The checkerboard with each item on offer for 5 to 120 days."""
    board = make_checkerboard()
    days = np.linspace(5.0, 120.0, board.data.n_items)
    return dataclasses.replace(board, data=dataclasses.replace(board.data, item_exposure_days=days))


class TestLightFMHybridItemAppeal(RecommenderContract):
    expected_epochs = 15

    @pytest.fixture(scope="class")
    @classmethod
    def checkerboard(cls):
        return exposed_board()

    @classmethod
    def make(cls) -> Recommender:
        return LightFMHybrid(no_components=8, epochs=15, num_threads=1, random_state=3,
                             item_appeal_weight=1.0)

    def test_mean_scores_follow_engagement_per_day_on_offer(self, fitted: LightFMHybrid,
                                                             checkerboard) -> None:
        data = checkerboard.data
        users = fitted.user_factors(np.arange(data.n_users), data.user_features)
        mean_score = fitted.item_factors() @ users.mean(axis=0)
        engaged = np.diff(data.interactions_csr().tocsc().indptr)
        rate = np.log((engaged + 1.0) / data.item_exposure_days)
        assert np.corrcoef(mean_score, rate)[0, 1] == pytest.approx(1.0, abs=1e-4)

    def test_the_weight_is_reset_without_refitting(self, checkerboard) -> None:
        data = checkerboard.data
        learned = LightFMHybrid(no_components=8, epochs=15, num_threads=1, random_state=3).fit(data)
        model = self.make().fit(data)
        assert not np.allclose(model.item_factors(), learned.item_factors())
        model.set_item_appeal(0.0, data)
        np.testing.assert_allclose(model.item_factors(), learned.item_factors(), rtol=1e-5, atol=1e-6)
        with pytest.raises(ModelError, match="item_appeal_weight"):
            model.set_item_appeal(-1.0, data)

    def test_without_exposure_days_the_learned_biases_stay(self) -> None:
        board = make_checkerboard()
        learned = LightFMHybrid(no_components=8, epochs=5, num_threads=1, random_state=3).fit(board.data)
        appealed = LightFMHybrid(no_components=8, epochs=5, num_threads=1, random_state=3,
                                 item_appeal_weight=1.0).fit(board.data)
        np.testing.assert_allclose(appealed.item_factors(), learned.item_factors())


def pushed_board():
    """The exposed checkerboard with every item pushed 200 times; the odd items opened 4x as often,
    the opposite of what engagement per day on offer says of them."""
    board = exposed_board()
    n = board.data.n_items
    sends = np.full(n, 200.0)
    opens = np.where(np.arange(n) % 2 == 1, 40.0, 10.0)
    data = dataclasses.replace(board.data, item_sends=sends, item_opens=opens)
    return dataclasses.replace(board, data=data)


class TestLightFMHybridOpenRateAppeal(RecommenderContract):
    expected_epochs = 15

    @pytest.fixture(scope="class")
    @classmethod
    def checkerboard(cls):
        return pushed_board()

    @classmethod
    def make(cls) -> Recommender:
        return LightFMHybrid(no_components=8, epochs=15, num_threads=1, random_state=3,
                             item_appeal_weight=1.0, item_appeal_source="open_rate")

    def test_mean_scores_follow_the_shrunk_open_rate(self, fitted: LightFMHybrid, checkerboard) -> None:
        data = checkerboard.data
        users = fitted.user_factors(np.arange(data.n_users), data.user_features)
        mean_score = fitted.item_factors() @ users.mean(axis=0)
        engaged = np.diff(data.interactions_csr().tocsc().indptr)
        engagement = engagement_rate(engaged, data.item_exposure_days)
        logit = open_rate_logit(data.item_sends, data.item_opens, engagement, fitted.open_rate_prior_sends)
        assert np.corrcoef(mean_score, logit)[0, 1] == pytest.approx(1.0, abs=1e-4)
        odd = np.arange(data.n_items) % 2 == 1
        assert mean_score[odd].min() > mean_score[~odd].max()

    def test_the_source_is_switched_without_refitting(self, checkerboard) -> None:
        data = checkerboard.data
        model = self.make().fit(data)
        by_engagement = LightFMHybrid(no_components=8, epochs=15, num_threads=1, random_state=3,
                                      item_appeal_weight=1.0).fit(data)
        model.set_item_appeal(1.0, data, "engagement")
        np.testing.assert_allclose(model.item_factors(), by_engagement.item_factors(), rtol=1e-5, atol=1e-6)
        assert model.params()["item_appeal_source"] == "engagement"
        with pytest.raises(ModelError, match="item_appeal_source"):
            model.set_item_appeal(1.0, data, "reads")

    def test_without_push_counts_it_reads_engagement(self) -> None:
        board = exposed_board()
        by_engagement = LightFMHybrid(no_components=8, epochs=5, num_threads=1, random_state=3,
                                      item_appeal_weight=1.0).fit(board.data)
        by_open_rate = LightFMHybrid(no_components=8, epochs=5, num_threads=1, random_state=3,
                                     item_appeal_weight=1.0, item_appeal_source="open_rate").fit(board.data)
        np.testing.assert_allclose(by_open_rate.item_factors(), by_engagement.item_factors())

    def test_bad_settings_are_refused(self) -> None:
        with pytest.raises(ModelError, match="item_appeal_source"):
            LightFMHybrid(item_appeal_source="clicks")
        with pytest.raises(ModelError, match="open_rate_prior_sends"):
            LightFMHybrid(open_rate_prior_sends=0.0)


class TestLightFMHybridWide(RecommenderContract):
    expected_epochs = 15

    @classmethod
    def make(cls) -> Recommender:
        return LightFMHybrid(no_components=8, epochs=15, num_threads=1, random_state=3, user_identity=False,
                             wide_weight=0.5)

    def test_the_wide_part_adds_columns_and_switches_off_at_weight_0(self, checkerboard) -> None:
        data = checkerboard.data
        learned = LightFMHybrid(no_components=8, epochs=15, num_threads=1, random_state=3,
                                user_identity=False).fit(data)
        model = self.make().fit(data)
        users = np.arange(data.n_users)
        widened = model.user_factors(users, data.user_features)
        assert widened.shape[1] > learned.user_factors(users, data.user_features).shape[1]
        assert not np.allclose(model.scores(users, data.user_features),
                               learned.scores(users, data.user_features))
        model.set_wide(0.0, data)
        np.testing.assert_allclose(model.item_factors(), learned.item_factors(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.user_factors(users, data.user_features),
                                   learned.user_factors(users, data.user_features), rtol=1e-5, atol=1e-6)
        with pytest.raises(ModelError, match="wide_weight"):
            model.set_wide(-1.0, data)

    def test_the_ridge_alone_ranks_the_own_camp_first(self, checkerboard) -> None:
        from recsys.models.wide import fit_ridge

        data = checkerboard.data
        ridge = fit_ridge(data.user_features, data.interactions, l2=0.01, max_rank=8)
        scores = ridge.user_block(data.user_features) @ ridge.items.T + ridge.offset
        own = checkerboard.item_camp[None, :] == checkerboard.user_camp[:, None]
        assert scores[own].min() > scores[~own].max()
        # centred: each item's mean score over the fitted rows is 0
        np.testing.assert_allclose(scores.mean(axis=0), 0.0, atol=1e-5)

    def test_rewinding_to_an_earlier_epoch_gives_that_fit(self, checkerboard) -> None:
        data = checkerboard.data
        states = []
        model = self.make().fit(data, callback=lambda epoch, fitted: states.append(fitted.embedding_state()))
        shorter = LightFMHybrid(no_components=8, epochs=6, num_threads=1, random_state=3, user_identity=False,
                                wide_weight=0.5).fit(data)
        model.rewind(states[5], 6, data)
        users = np.arange(data.n_users)
        assert model.epochs == 6
        np.testing.assert_allclose(model.scores(users, data.user_features),
                                   shorter.scores(users, data.user_features), rtol=1e-4, atol=1e-5)


class TestLightFMHybridFeatureItems(RecommenderContract):
    """Items represented by their features only (no identity), with item appeal and the wide part."""

    expected_epochs = 15

    @pytest.fixture(scope="class")
    @classmethod
    def checkerboard(cls):
        return exposed_board()

    @classmethod
    def make(cls) -> Recommender:
        return LightFMHybrid(no_components=8, epochs=15, num_threads=1, random_state=3, user_identity=False,
                             item_identity=False, item_appeal_weight=1.0, wide_weight=0.5)

    def test_items_with_the_same_features_differ_only_by_appeal_and_the_wide_part(
            self, fitted: LightFMHybrid, checkerboard) -> None:
        data = checkerboard.data
        factors = fitted.item_factors()
        rank = fitted.no_components
        camp_a = np.flatnonzero(checkerboard.item_camp == 0)
        # the learned embedding is the camp's: no per-item column to learn from
        np.testing.assert_allclose(factors[camp_a, :rank], np.broadcast_to(factors[camp_a[0], :rank],
                                                                          (camp_a.size, rank)))
        assert fitted.lightfm.item_embeddings.shape[0] == data.item_features.shape[1]
        # engagement per day on offer still orders the items within a camp (appeal applied)
        users = fitted.user_factors(np.arange(data.n_users), data.user_features)
        mean_score = factors @ users.mean(axis=0)
        engaged = np.diff(data.interactions_csr().tocsc().indptr)
        rate = engagement_rate(engaged, data.item_exposure_days)
        assert np.corrcoef(mean_score[camp_a], rate[camp_a])[0, 1] > 0.9
