"""Gap closed at top-1 against a world's truth (`training.truth.score_recommendations`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from features.loader import Dataset
from qianmian.cli import app
from recsys.ids import IdIndex
from recsys.ranking import Eligibility
from training.truth import (
    Top1Gap,
    read_popularity_top1,
    read_recommendations,
    score_recommendations,
    top1_gap,
)
from worlds import ResponseParams, WorldTruth
from worlds.scenario import Scenario


def test_top1_gap_on_a_hand_made_truth():
    open_prob = np.array([
        [0.10, 0.50, 0.20],
        [0.30, 0.10, 0.60],
        [0.40, 0.20, 0.10],
        [0.90, 0.90, 0.90],  # nothing eligible for the oracle: left out
    ])
    oracle = np.array([1, 2, 0, -1])
    popularity = np.array([0, 0, 0, 0])
    engine = np.array([1, 1, -1, 2])  # right, wrong, nothing sent
    gap = top1_gap(open_prob, engine, popularity, oracle)
    assert gap == Top1Gap(users=3, engine=pytest.approx(0.2), popularity=pytest.approx(0.8 / 3),
                          oracle=pytest.approx(1.5 / 3))
    assert gap.gap_closed == pytest.approx((0.6 - 0.8) / (1.5 - 0.8))
    first_two = top1_gap(open_prob, engine, popularity, oracle, np.array([True, True, False, True]))
    assert first_two.users == 2 and first_two.gap_closed == pytest.approx((0.6 - 0.4) / (1.1 - 0.4))
    assert np.isnan(top1_gap(open_prob, popularity, popularity, popularity).gap_closed)


def _hand_made_world() -> tuple[Dataset, WorldTruth]:
    """Four cardholders, six items: a-c open, d a reminder, e for gold and up, f expired."""
    as_of = pd.Timestamp("2026-10-31T23:59:59Z")
    users, items = ["u1", "u2", "u3", "u4"], ["a", "b", "c", "d", "e", "f"]
    open_prob = np.array([
        [0.10, 0.50, 0.20, 0.90, 0.80, 0.90],
        [0.30, 0.10, 0.60, 0.90, 0.70, 0.90],
        [0.40, 0.20, 0.10, 0.90, 0.80, 0.90],
        [0.20, 0.45, 0.40, 0.90, 0.80, 0.90],
    ], dtype=np.float32)
    ts = pd.Timestamp("2026-10-20T12:00:00Z")
    dataset = Dataset(
        root=Path("hand-made"),
        cardholders=pd.DataFrame({"user_id": users, "card_tier": ["classic", "gold", "classic", "classic"]}),
        transactions=pd.DataFrame(columns=["user_id", "ts"]),
        menu_clicks=pd.DataFrame(columns=["user_id", "ts"]),
        article_reads=pd.DataFrame({"user_id": ["u2", "u3", "u1"], "ts": [ts] * 3,
                                    "content_id": ["a", "a", "c"]}),
        content=pd.DataFrame({
            "content_id": items, "kind": ["article"] * 3 + ["reminder", "promotion", "promotion"],
            "tags": ["x"] * 6, "valid_from": [pd.NaT] * 6,
            "valid_to": [pd.NaT] * 5 + [pd.Timestamp("2026-10-01T00:00:00Z")],
            "card_tiers": [None] * 4 + ["gold|platinum|diamond", None],
            "transactional": [False, False, False, True, False, False],
        }),
        push_log=pd.DataFrame({"user_id": ["u4"], "content_id": ["b"], "sent_ts": [ts]}),
        present=frozenset(),
    )
    zeros_u, zeros_i = np.zeros(4, dtype=np.float32), np.zeros(6, dtype=np.float32)
    truth = WorldTruth(
        user_ids=np.array(users), content_ids=np.array(items), open_prob=open_prob, as_of=as_of, seed=0,
        topics=("t",), params=ResponseParams(), user_engagement=zeros_u, user_taste=np.zeros((4, 1)),
        user_mute_offset=zeros_u, item_appeal=zeros_i, item_topics=np.zeros((6, 1)),
        item_transactional=np.array([False, False, False, True, False, False]),
        user_persona=np.zeros(4, dtype=np.int16), persona_names=("p",), user_statement_day=np.ones(4),
        user_reader=np.array([True, True, True, False]),
    )
    return dataset, truth


def test_score_recommendations_on_a_hand_made_world():
    """Eligible per cardholder: u1 {a, b} (read c), u2 {b, c, e} (read a, gold), u3 {b, c} (read a),
    u4 {a, c} (pushed b). Reads: a twice, c once. Popularity: a, c, c, a = .1 .6 .1 .2; oracle: b, e, b, c
    = .5 .7 .2 .4; engine: b, c, a (already read: not sent), none = .5 .6 0 0."""
    dataset, truth = _hand_made_world()
    recs = pd.DataFrame({"user_id": ["u1", "u2", "u2", "u3"], "rank": [1, 2, 1, 1],
                         "content_id": ["b", "a", "c", "a"]})
    scored = score_recommendations(recs, dataset, truth)
    assert scored.overall == Top1Gap(users=4, engine=pytest.approx(0.275), popularity=pytest.approx(0.25),
                                     oracle=pytest.approx(0.45))
    assert scored.overall.gap_closed == pytest.approx(0.125)
    assert scored.non_readers == Top1Gap(users=1, engine=0.0, popularity=pytest.approx(0.2),
                                         oracle=pytest.approx(0.4))
    assert scored.non_readers.gap_closed == pytest.approx(-1.0)
    assert scored.covered == 0.5 and scored.violations == 1


def test_the_popularity_baseline_is_each_cardholders_most_read_item_it_may_still_get():
    """Reads up to the as-of time: a twice, c once (a later read of b does not count)."""
    dataset, truth = _hand_made_world()
    late = pd.DataFrame({"user_id": ["u4"] * 3, "ts": [truth.as_of + pd.Timedelta(days=1)] * 3,
                         "content_id": ["b"] * 3})
    dataset = replace(dataset, article_reads=pd.concat([dataset.article_reads, late], ignore_index=True))
    items = IdIndex(np.asarray(truth.content_ids, dtype=object))
    # u1 may get anything, u2 not a, u3 only b, u4 nothing
    seen = sp.csr_matrix(np.array([[0] * 6, [1, 0, 0, 0, 0, 0], [1, 0, 1, 1, 1, 1], [1] * 6]))
    top1 = read_popularity_top1(dataset, truth.as_of, items, Eligibility(seen=seen), 4)
    assert top1.tolist() == [0, 2, 1, -1]


def _eligible(world) -> np.ndarray:
    """bool [users, items] in truth order, from the tables directly: valid at as-of, not transactional,
    tier allowed, never read or pushed before."""
    data, truth = world.dataset, world.truth
    content = data.content.set_index("content_id").loc[truth.content_ids]
    as_of = truth.as_of
    started = content["valid_from"].isna() | (content["valid_from"] <= as_of)
    not_ended = content["valid_to"].isna() | (content["valid_to"] >= as_of)
    live = (started & not_ended & ~content["transactional"]).to_numpy()
    tiers = data.cardholders.set_index("user_id").loc[truth.user_ids, "card_tier"].to_numpy()
    ok = np.repeat(live[None, :], len(truth.user_ids), axis=0)
    for column, allowed in enumerate(content["card_tiers"].fillna("")):
        if allowed:
            ok[:, column] &= np.isin(tiers, allowed.split("|"))
    for frame in (data.article_reads, data.push_log):
        rows = truth.user_index(frame["user_id"].to_numpy())
        ok[rows, truth.content_index(frame["content_id"].to_numpy())] = False
    return ok


def _recs(world, top1: np.ndarray) -> pd.DataFrame:
    truth = world.truth
    has = top1 >= 0
    return pd.DataFrame({"user_id": truth.user_ids[has], "rank": 1,
                         "content_id": truth.content_ids[top1[has]], "score": 1.0})


@pytest.fixture(scope="module")
def world(scenario_world):
    return scenario_world(Scenario(reader_share=0.5))


def test_the_oracle_closes_the_whole_gap_and_popularity_none(world, tmp_path):
    ok = _eligible(world)
    truth = world.truth
    oracle = np.where(ok.any(axis=1), np.where(ok, truth.open_prob, -1.0).argmax(axis=1), -1)
    reads = world.dataset.article_reads["content_id"].value_counts()
    reads = reads.reindex(truth.content_ids).fillna(0).to_numpy()
    popular = np.where(ok.any(axis=1), np.where(ok, reads[None, :], -1.0).argmax(axis=1), -1)

    path = tmp_path / "oracle.csv"
    _recs(world, oracle).to_csv(path, index=False)
    best = score_recommendations(read_recommendations(path), world.dataset, truth)
    assert best.overall.gap_closed == pytest.approx(1.0)
    assert best.non_readers.gap_closed == pytest.approx(1.0)
    assert best.covered == 1.0 and best.violations == 0
    assert best.overall.users == int(ok.any(axis=1).sum())
    assert best.non_readers.users == int((ok.any(axis=1) & ~truth.user_reader).sum())

    path = tmp_path / "popular.parquet"
    _recs(world, popular).to_parquet(path)
    plain = score_recommendations(read_recommendations(path), world.dataset, truth)
    assert plain.overall.gap_closed == pytest.approx(0.0, abs=1e-6)
    assert plain.overall.oracle > 1.5 * plain.overall.popularity  # personalisation matters here
    assert plain.to_dict()["gap_closed_top1_non_readers"] == pytest.approx(0.0, abs=1e-6)


def test_lower_ranks_missing_cardholders_and_ineligible_items(world):
    ok = _eligible(world)
    truth = world.truth
    oracle = np.where(ok.any(axis=1), np.where(ok, truth.open_prob, -1.0).argmax(axis=1), -1)
    recs = _recs(world, oracle)
    worst = np.where(ok, truth.open_prob, 2.0).argmin(axis=1)
    second = recs.assign(rank=2, content_id=truth.content_ids[worst[truth.user_index(recs["user_id"])]])
    # rank 1 decides, whatever the row order
    assert score_recommendations(pd.concat([second, recs]), world.dataset, truth).overall.gap_closed == \
        pytest.approx(1.0)

    half = recs.iloc[: len(recs) // 2]
    partial = score_recommendations(half, world.dataset, truth)
    assert partial.covered == pytest.approx(len(half) / len(recs), abs=1e-3)
    assert partial.overall.engine < 0.6 * score_recommendations(recs, world.dataset, truth).overall.engine

    blocked = np.argmin(ok, axis=1)  # an item each cardholder may not receive
    bad = recs.assign(content_id=truth.content_ids[blocked[truth.user_index(recs["user_id"])]])
    scored = score_recommendations(bad, world.dataset, truth)
    assert scored.violations == len(recs) and scored.covered == 0.0 and scored.overall.engine == 0.0


def test_a_recommendation_file_without_the_needed_columns_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    pd.DataFrame({"user_id": ["u1"], "item": ["a"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="lacks column.*content_id, rank"):
        read_recommendations(path)


def test_cli_score_prints_the_gap_closed(world, tmp_path):
    truth = world.truth
    recs = tmp_path / "recs.parquet"
    _recs(world, np.zeros(len(truth.user_ids), dtype=np.int64)).to_parquet(recs)  # first item for everyone
    result = CliRunner().invoke(app, ["score", "--data", str(world.summary.out), "--recs", str(recs)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    expected = score_recommendations(pd.read_parquet(recs), world.dataset, truth).to_dict()
    assert figures["gap_closed_top1"] == pytest.approx(expected["gap_closed_top1"], abs=1e-5)
    assert figures["non_readers.users"] == int((~truth.user_reader).sum())


def test_cli_score_names_a_missing_truth_or_a_bad_file(world, tmp_path):
    recs = tmp_path / "recs.csv"
    recs.write_text("user_id,rank\nu1,1\n")
    missing = CliRunner().invoke(app, ["score", "--data", str(world.summary.out), "--recs", str(recs),
                                       "--truth", str(tmp_path / "none.npz")])
    assert missing.exit_code == 1 and "none.npz does not exist" in missing.output
    bad = CliRunner().invoke(app, ["score", "--data", str(world.summary.out), "--recs", str(recs)])
    assert bad.exit_code == 2 and "lacks column(s) content_id" in bad.output
