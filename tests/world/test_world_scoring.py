"""Gap closed at top-1 against a world's truth (`training.truth.score_recommendations`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qianmian.cli import app
from recsys.world.scenario import Scenario
from training.truth import Top1Gap, read_recommendations, score_recommendations, top1_gap


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
