"""The publication store: record encoding, atomic switch, retention, and failure half-way."""

from __future__ import annotations

import time

import numpy as np
import pytest

from features.bundle_inputs import dataset_eligibility, feature_builder
from publishing.publish import publish
from recsys.publication import (
    PublicationError,
    PublishLockedError,
    UserRecord,
    decode_user,
    decode_users,
    encode_user,
    index_dtype,
)

pytestmark = pytest.mark.redis


def test_user_record_round_trip() -> None:
    record = UserRecord(
        group=2, timezone=1, opt_in=False, factors=np.arange(5, dtype=np.float32),
        feature_index=np.array([1, 9]), feature_values=np.array([0.2, 0.8], np.float32),
        seen=np.array([4, 70000]),
    )
    items, features = index_dtype(80000), index_dtype(100)
    blob = encode_user(record, items, features)
    back = decode_user(blob, items, features)
    assert (back.group, back.timezone, back.opt_in) == (2, 1, False)
    np.testing.assert_array_equal(back.seen, [4, 70000])
    np.testing.assert_array_equal(back.factors, record.factors)
    np.testing.assert_array_equal(back.feature_values, record.feature_values)
    with pytest.raises(PublicationError, match="expected"):
        decode_user(blob[:-1], items, features)


@pytest.mark.parametrize("n_items, n_features", [(300, 100), (80000, 70000)])
def test_a_batch_of_records_decodes_as_each_record_encoded(n_items, n_features) -> None:
    """Records of every shape (no features, nothing seen, both index widths) decoded together give back
    what was encoded, row by row; the single-record decoder is the same."""
    items, features = index_dtype(n_items), index_dtype(n_features)
    rng = np.random.default_rng(7)
    records = []
    for i in range(40):
        nnz, n_seen = int(rng.integers(0, 30)) * (i % 3 != 0), int(rng.integers(0, 9)) * (i % 4 != 0)
        records.append(UserRecord(
            group=int(rng.integers(-1, 4)), timezone=int(rng.integers(0, 3)), opt_in=bool(i % 2),
            factors=rng.standard_normal(6).astype(np.float32),
            feature_index=rng.choice(n_features, nnz, replace=False),
            feature_values=rng.standard_normal(nnz).astype(np.float32),
            seen=rng.choice(n_items, n_seen, replace=False)))
    blobs = [encode_user(record, items, features) for record in records]
    batch = decode_users(blobs, items, features)
    assert len(batch) == len(records) and batch.factors.shape == (40, 6)
    for row, (record, blob) in enumerate(zip(records, blobs, strict=True)):
        for back in (batch.record(row), decode_user(blob, items, features)):
            assert (back.group, back.timezone, back.opt_in) == (record.group, record.timezone, record.opt_in)
            np.testing.assert_array_equal(back.factors, record.factors)
            np.testing.assert_array_equal(back.feature_index, record.feature_index)
            np.testing.assert_array_equal(back.feature_values, record.feature_values)
            np.testing.assert_array_equal(back.seen, record.seen)
            assert (back.feature_index.dtype, back.seen.dtype) == (features, items)
    assert len(decode_users([], items, features)) == 0


def test_a_batch_of_records_names_the_first_bad_one() -> None:
    items = features = index_dtype(100)
    record = UserRecord(group=0, timezone=0, opt_in=True, factors=np.ones(4, np.float32),
                        feature_index=np.array([3]), feature_values=np.ones(1, np.float32),
                        seen=np.array([5]))
    good = encode_user(record, items, features)
    shorter = encode_user(UserRecord(0, 0, True, np.ones(3, np.float32), np.array([3]),
                                     np.ones(1, np.float32), np.array([5])), items, features)
    for bad, message in [(good[:5], "of 5 bytes is truncated"),
                         (good[:-1], f"has {len(good) - 1} bytes, expected"),
                         (b"\x01" + good[1:], "layout 1 is not"),
                         (shorter, "factors of different lengths")]:
        with pytest.raises(PublicationError, match=message):
            decode_users([good, bad, good], items, features)


def test_publish_goes_live_with_every_cardholder(published, store, dataset, redis_client) -> None:
    assert store.live_version() == published.version
    assert published.users == dataset.cardholders["user_id"].nunique()
    assert published.affine_features
    loaded = store.load(published.version)
    assert loaded.manifest["n_users"] == published.users
    assert loaded.arrays["item_factors"].shape == (published.items, published.dim)
    assert published.record_bytes_mean < 1200
    keys = list(redis_client.scan_iter(match=store.user_pattern(published.version), count=1000))
    assert len(keys) == published.users


def test_request_time_ranking_matches_offline_top_k(published, store, bundle, dataset,
                                                    redis_client) -> None:
    """The API's eligibility at the as-of time reproduces the offline batch top-k exactly."""
    from recsys.ranking import top_k
    from serving.pipeline import LiveModel

    model = LiveModel(store.load(published.version))
    as_of = bundle.as_of.to_pydatetime()
    ids = dataset.cardholders["user_id"].astype(str).tolist()[:150]
    records = [decode_user(redis_client.get(store.user_key(published.version, user_id)),
                           model.item_dtype, model.feature_dtype) for user_id in ids]
    opted_in = [i for i, record in enumerate(records) if record.opt_in]
    offline_ids = np.asarray([ids[i] for i in opted_in], dtype=object)
    factors = np.stack([records[i].factors for i in opted_in])
    offline, offline_scores = top_k(factors, bundle.model.item_factors(), 10,
                                    dataset_eligibility(bundle, dataset, bundle.as_of, offline_ids))
    blobs = [redis_client.get(store.user_key(published.version, ids[i])) for i in opted_in]
    published_users = model.known(decode_users(blobs, model.item_dtype, model.feature_dtype))
    users = [published_users.user(row) for row in range(len(published_users))]
    block = model.rank_block(users, as_of, 10)
    for expected, expected_scores, user, in_block in zip(offline, offline_scores, users, block, strict=True):
        n = int((expected >= 0).sum())
        for ranked in (model.rank(user, as_of, None), model.rank_block([user], as_of, n)[0], in_block):
            np.testing.assert_array_equal(ranked.items[:n], expected[:n].astype(np.int64))
            np.testing.assert_allclose(ranked.scores[:n], expected_scores[:n], rtol=1e-5, atol=1e-5)
    assert len(users) > 100


def test_a_cardholders_scores_do_not_depend_on_who_is_ranked_with_them(published, store, bundle, dataset,
                                                                     redis_client, monkeypatch) -> None:
    """Alone, in a small group or in a matrix block (and with explicit candidates), the same bits:
    an answer must not depend on how many requests were coalesced with it."""
    from serving import pipeline
    from serving.pipeline import MIN_BLOCK, SMALL_BLOCK, LiveModel

    model = LiveModel(store.load(published.version))
    # the smallest blocks, so that the cardholders below span two of them
    monkeypatch.setattr(pipeline, "BLOCK_SCORES", MIN_BLOCK * model.n_items)
    assert model.block_rows == MIN_BLOCK
    as_of = bundle.as_of.to_pydatetime()
    ids = dataset.cardholders["user_id"].astype(str).tolist()[:model.block_rows + 7]
    published_users = model.known(decode_users([redis_client.get(store.user_key(published.version, user_id))
                                                for user_id in ids], model.item_dtype, model.feature_dtype))
    users = [published_users.user(row) for row in range(len(published_users))]
    users = [user for user in users if user.opt_in]
    block = model.rank_block(users, as_of, 8)
    small = model.rank_block(users[:SMALL_BLOCK], as_of, 8)
    for index, user in enumerate(users):
        alone = model.rank_block([user], as_of, 8)[0]
        for other in [block[index]] + ([small[index]] if index < SMALL_BLOCK else []):
            np.testing.assert_array_equal(other.items, alone.items)
            np.testing.assert_array_equal(other.scores, alone.scores)
        chosen = [model.item_ids[i] for i in alone.items.tolist()]
        explicit = model.rank(user, as_of, chosen)
        np.testing.assert_array_equal(explicit.scores, alone.scores)
    assert len(users) > SMALL_BLOCK + model.block_rows // 2


def test_batch_arrays_of_decoded_records_rank_and_explain_as_one_by_one(published, store, bundle, dataset,
                                                                         redis_client) -> None:
    """The batch's arrays straight from the decoded records equal those gathered from each cardholder's
    representation (also for a part of the batch, and with cardholders the publication lacks), and
    ranking and reasons over either give the same answers, bit for bit."""
    from serving.pipeline import Cardholders, LiveModel

    model = LiveModel(store.load(published.version))
    ids = dataset.cardholders["user_id"].astype(str).tolist()[:150]
    records = decode_users([redis_client.get(store.user_key(published.version, user_id)) for user_id in ids],
                           model.item_dtype, model.feature_dtype)
    direct = model.known(records)
    users = [direct.user(row) for row in range(len(direct))]
    gathered = model.cardholders(users)
    rows = np.array([5, 0, 149, 17, 17, 60])
    for left, right in [(direct, gathered), (direct.take(rows), model.cardholders([users[i] for i in rows])),
                        (direct.rows(10, 90), model.cardholders(users[10:90]))]:
        for field in Cardholders.__slots__:  # the lists of time zones and fallbacks as well
            np.testing.assert_array_equal(getattr(left, field), getattr(right, field), err_msg=field)
    as_of = bundle.as_of.to_pydatetime()
    batched, alone_all = model.rank_block(direct, as_of, 7), model.rank_block(users, as_of, 7)
    for ranked, alone in zip(batched, alone_all, strict=True):
        np.testing.assert_array_equal(ranked.items, alone.items)
        np.testing.assert_array_equal(ranked.scores, alone.scores)
    picked = [ranked.items[:3].tolist() for ranked in model.rank_block(direct, as_of, 3)]
    assert model.reasons_many(direct, picked) == model.reasons_many(users, picked)
    mixed = [model.unknown(None), *users[:20], model.unknown({"card_tier=" + model.tiers[0]: 1.0})]
    both = model.cardholders(mixed)
    assert both.scored.tolist() == [False, *[True] * 20, False] and both.group[-1] == 0
    for ranked, user in zip(model.rank_block(both, as_of, 5), mixed, strict=True):
        np.testing.assert_array_equal(ranked.items, model.rank(user, as_of, None).items[:5])
    assert sum(len(ranked.items) for ranked in model.rank_block(direct, as_of, 7)) > 500


def test_a_block_marks_only_rows_whose_scores_are_all_finite(published, store, bundle, dataset,
                                                             redis_client) -> None:
    """Answers skip their per-cardholder score test for the rows a ranked block found finite in one
    pass: a cardholder whose scores are not finite is not marked, in a block of full rows or beside
    short ones, nor is a row ranked alone or from named candidates."""
    from dataclasses import replace

    from serving.pipeline import SMALL_BLOCK, LiveModel

    model = LiveModel(store.load(published.version))
    ids = dataset.cardholders["user_id"].astype(str).tolist()[:40]
    direct = model.known(decode_users([redis_client.get(store.user_key(published.version, user_id))
                                       for user_id in ids], model.item_dtype, model.feature_dtype))
    users = [user for user in map(direct.user, range(len(direct)))
             if user.opt_in and user.factors is not None]
    assert len(users) > SMALL_BLOCK + 1
    as_of = bundle.as_of.to_pydatetime()
    full = model.rank_block(users, as_of, 5)
    assert all(ranked.finite and np.isfinite(ranked.scores).all() for ranked in full)
    broken = replace(users[2], factors=np.full_like(users[2].factors, np.nan))
    block = model.rank_block([*users[:2], broken, *users[3:]], as_of, 5)
    assert [ranked.finite for ranked in block] == [index != 2 for index in range(len(users))]
    assert not model.rank_block([users[0]], as_of, 5)[0].finite  # alone: tested in the answer
    named = [model.item_ids[i] for i in block[0].items.tolist()]
    assert not model.rank(users[0], as_of, named).finite


def test_reasons_follow_the_largest_feature_contribution(published, store, dataset, redis_client) -> None:
    """Each reason against a slow reference of the rule: the user feature adding most to the item's
    lift over the average item (first in feature order on ties) when it is positive and at least the
    part the features leave unexplained; else the collaborative reason, or the profile one for a
    cardholder described by features. Answers of 0-3 items, alone, in one batch and in a batch whose
    other rows cannot be explained by features (a cardholder without factors or without features), agree."""
    from dataclasses import replace

    from serving.pipeline import PROFILE_REASON, SIMILAR_REASON, LiveModel

    model = LiveModel(store.load(published.version))
    ids = dataset.cardholders["user_id"].astype(str).tolist()[:120]
    published_users = model.known(decode_users([redis_client.get(store.user_key(published.version, user_id))
                                                for user_id in ids], model.item_dtype, model.feature_dtype))
    users = [published_users.user(row) for row in range(len(published_users))]
    users = [user for user in users if user.factors is not None and len(user.feature_index)]
    for user in users[::5]:
        user.fallback = "features"
    rng = np.random.default_rng(3)
    picked = [rng.choice(model.n_items, size=int(rng.integers(0, 4)), replace=False).tolist() for _ in users]
    checked = 0
    without_features = replace(users[1], feature_index=users[1].feature_index[:0],
                               feature_values=users[1].feature_values[:0])
    mixed = model.reasons_many([model.unknown(None), without_features, *users], [[0], [1, 2], *picked])
    assert mixed[:2] == [["popular with cardholders"], [SIMILAR_REASON] * 2]
    assert mixed[2:] == model.reasons_many(users, picked)
    for user, items, batched in zip(users, picked, model.reasons_many(users, picked), strict=True):
        assert batched == model.reasons(user, items)
        values = model.normalised(user.feature_values.astype(np.float64))
        explained = values @ model.feature_map[user.feature_index] + model.feature_offset
        for item, reason in zip(items, batched, strict=True):
            parts = model.contributions[user.feature_index, item].astype(np.float64) * values
            best = int(np.argmax(parts))
            rest = (model.centred_items[item].astype(np.float64)
                    @ (user.factors - explained) if user.fallback is None else -np.inf)
            if abs(parts[best] - rest) < 1e-4 or abs(parts[best]) < 1e-6:
                continue  # too close to call in float32
            if parts[best] > 0 and parts[best] >= rest:
                assert reason == model.phrases[user.feature_index[best]]
            else:
                assert reason == (SIMILAR_REASON if user.fallback is None else PROFILE_REASON)
            checked += 1
    assert checked > 100


def test_features_reproduce_factors_of_unseen_cardholders(published, store, bundle, dataset) -> None:
    """The published affine feature map gives the model's own factors for feature-only cardholders."""
    import scipy.sparse as sp

    from serving.pipeline import LiveModel

    model = LiveModel(store.load(published.version), feature_builder(bundle))
    rows = feature_builder(bundle).transform_users(dataset, bundle.as_of, dataset.cardholders["user_id"][:20])
    expected = bundle.model.user_factors(np.full(20, -1), sp.csr_matrix(rows))
    for i, features in enumerate(feature_builder(bundle).user_feature_dicts(rows)):
        user = model.unknown(features)
        assert user.fallback == "features"
        np.testing.assert_allclose(user.factors, expected[i], rtol=1e-4, atol=1e-4)


def test_failed_publish_leaves_live_version_untouched(published, store, bundle, dataset,
                                                      redis_client) -> None:
    def dies_half_way(records):
        for count, record in enumerate(records):
            if count == 250:
                raise RuntimeError("disk full")
            yield record

    with pytest.raises(RuntimeError, match="disk full"):
        publish(bundle, dataset, store, chunk=100, records_hook=dies_half_way)
    assert store.live_version() == published.version
    assert store.versions() == [published.version]
    leftovers = [k for k in redis_client.scan_iter(match=store.key("v", "*", "meta"))
                 if published.version.encode() not in k]
    assert leftovers == []


def test_killed_publish_is_invisible_and_cleaned_up_by_the_next(published, store, bundle, dataset,
                                                                 redis_client) -> None:
    """A publisher killed before its switch (no abort ran) leaves keys that never go live."""
    writer = store.begin(lease=1.0)
    writer.write_meta({"items": {}}, {}, None)
    writer.write_users([("u-partial", b"\x01")])
    assert store.live_version() == published.version
    with pytest.raises(PublicationError, match="incomplete"):
        store.load(writer.version)
    with pytest.raises(PublishLockedError, match="another publish"):
        store.begin()
    time.sleep(1.1)  # the dead publisher's lease runs out
    second = publish(bundle, dataset, store)
    assert writer.version in second.deleted
    assert not redis_client.exists(store.user_key(writer.version, "u-partial"))
    assert store.live_version() == second.version


def test_previous_version_is_kept_until_the_next_publish(published, store, bundle, dataset) -> None:
    second = publish(bundle, dataset, store)
    assert second.previous == published.version
    assert store.versions() == [published.version, second.version]
    third = publish(bundle, dataset, store)
    assert third.deleted == [published.version]
    assert store.versions() == [second.version, third.version]
    with pytest.raises(PublicationError):
        store.delete_version(third.version)


def test_simulation_without_a_model_ranks_as_the_api_fallback(published, store, bundle, dataset,
                                                              redis_client) -> None:
    """The studio's default ranking is the popularity the API serves cardholders it cannot score."""
    from features.popularity import popularity
    from serving.pipeline import LiveModel, Representation
    from simulation.replay import rank_candidates

    model = LiveModel(store.load(published.version))
    ids = np.asarray(dataset.cardholders["user_id"].astype(str).tolist()[:120], dtype=object)
    content_ids = np.asarray(model.item_ids, dtype=object)
    simulated, _ = rank_candidates(dataset, ids, content_ids, bundle.as_of, 5)
    served = popularity(dataset, bundle.as_of, bundle.items)
    compared = 0
    for row, user_id in enumerate(ids):
        record = decode_user(redis_client.get(store.user_key(published.version, user_id)),
                             model.item_dtype, model.feature_dtype)
        if not record.opt_in:
            continue
        fallback = Representation(None, record.group, None, True, record.feature_index, record.feature_values,
                                  record.seen, "segment_popularity")
        ranked = model.rank_block([fallback], bundle.as_of.to_pydatetime(), 5)[0]
        expected = [index for index in simulated[row].tolist() if index >= 0]
        assert ranked.items.tolist() == expected, user_id
        table = served.per_tier[record.group] if record.group >= 0 else served.overall
        np.testing.assert_array_equal(ranked.scores, table[expected])
        compared += 1
    assert compared > 80


def test_a_fenced_off_publish_cannot_go_live(published, store, bundle, dataset) -> None:
    """A publisher that stalled past its lease: the next one runs; the stalled one can neither
    write nor switch, and the live version is always a verified one."""
    stalled = store.begin(lease=0.2)
    stalled.write_meta({"n_users": 1, "items": {}, "item_index_dtype": "<u2",
                        "feature_index_dtype": "<u2"}, {}, None)
    time.sleep(0.3)
    second = publish(bundle, dataset, store)
    with pytest.raises(PublishLockedError, match="lost its lock"):
        stalled.write_users([("u1", b"\x01")])
    with pytest.raises(PublishLockedError):
        stalled.commit()
    assert store.live_version() == second.version
    assert store.load(second.version).manifest["n_users"] == second.users


def test_a_version_whose_counts_do_not_match_is_refused(published, store, redis_client) -> None:
    redis_client.hset(store.meta_key(published.version), "users", published.users - 1)
    with pytest.raises(PublicationError, match="publish again"):
        store.load(published.version)
    redis_client.hdel(store.meta_key(published.version), "manifest")
    with pytest.raises(PublicationError, match="damaged"):
        store.load(published.version)
