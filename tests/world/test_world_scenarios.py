"""Scenario options of `recsys synth`: each changes the structure it names; the defaults change nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract import MENU_KEYS
from qianmian.cli import app
from tests.world.conftest import file_bytes
from worlds import ResponseParams, WorldConfig, WorldConfigError, WorldTruth, generate_world
from worlds.catalog import CONTEXT_TAGS, FINANCE_TOPICS, SPEND_CATEGORIES, TOPICS
from worlds.scenario import SCENARIOS, Scenario

_CATEGORY_OF = {code: row for row, category in enumerate(SPEND_CATEGORIES) for code in category.mccs}
_MCCS = sorted(_CATEGORY_OF)


def _counts(truth: WorldTruth, frame: pd.DataFrame, column: str, vocabulary: dict[str, int]) -> np.ndarray:
    counts = np.zeros((len(truth.user_ids), len(vocabulary)))
    rows = truth.user_index(frame["user_id"].to_numpy())
    np.add.at(counts, (rows, frame[column].map(vocabulary).to_numpy()), 1)
    return counts


def _spend_features(world, fine: bool = False) -> np.ndarray:
    vocabulary = {code: row for row, code in enumerate(_MCCS)} if fine else _CATEGORY_OF
    counts = _counts(world.truth, world.dataset.transactions, "mcc", vocabulary)
    return np.log((counts + 0.5) / (counts + 0.5).sum(axis=1, keepdims=True))


def _menu_features(world) -> np.ndarray:
    keys = {key: row for row, key in enumerate(MENU_KEYS)}
    counts = _counts(world.truth, world.dataset.menu_clicks, "menu_key", keys)
    return np.log1p(counts)


def _explained(world, features: np.ndarray) -> float:
    """Out-of-sample R^2 of a linear fit from ``features`` to each cardholder's taste match with every
    marketing item, centred per cardholder (what decides which item they open most)."""
    truth = world.truth
    marketing = ~truth.item_transactional
    target = truth.user_taste @ truth.item_topics[marketing].T
    target = target - target.mean(axis=1, keepdims=True)
    half = len(features) // 2
    mean, scale = features[:half].mean(axis=0), features[:half].std(axis=0) + 1e-9
    design = (features - mean) / scale
    # ridge, so a few dozen sparse MCC columns are not penalised for overfitting 1,500 cardholders
    gram = design[:half].T @ design[:half] + 100.0 * np.eye(design.shape[1])
    coef = np.linalg.solve(gram, design[:half].T @ (target[:half] - target[:half].mean(axis=0)))
    residual = target[half:] - target[:half].mean(axis=0) - design[half:] @ coef
    centred = target[half:] - target[:half].mean(axis=0)
    return 1.0 - float((residual**2).sum() / (centred**2).sum())


def test_default_and_categories_scenario_give_the_default_world_byte_for_byte(tmp_path):
    config = {"users": 600, "items": 30, "days": 30, "seed": 9}
    plain = generate_world(WorldConfig(**config), tmp_path / "plain")
    named = generate_world(WorldConfig(**config, scenario=SCENARIOS["categories"]), tmp_path / "named")
    assert file_bytes(plain.out) == file_bytes(named.out)
    assert plain.truth.read_bytes() == named.truth.read_bytes()
    truth = WorldTruth.load(plain.truth)
    assert truth.scenario is None and truth.user_peak_hour is None and truth.topics == TOPICS


def test_a_scenario_world_is_deterministic_and_records_its_options(tmp_path):
    config = WorldConfig(users=600, items=30, days=30, seed=9, scenario=SCENARIOS["merchants"])
    first = generate_world(config, tmp_path / "a")
    second = generate_world(config, tmp_path / "b")
    assert file_bytes(first.out) == file_bytes(second.out)
    assert first.truth.read_bytes() == second.truth.read_bytes()
    truth = WorldTruth.load(first.truth)
    assert truth.scenario["taste_channel"] == "merchants" and truth.scenario["name"] == "merchants"
    assert truth.params.hour_weight == 0.6


@pytest.mark.parametrize(("options", "message"), [
    ({"taste_channel": "brands"}, "--taste must be one of"),
    ({"reader_share": 1.5}, "--reader-share must be between 0 and 1"),
    ({"tags": "emoji"}, "--tags must be one of"),
    ({"hour_preference": -1.0}, "--hour-preference must be between"),
    ({"noise": 9.0}, "--noise must be between"),
])
def test_out_of_range_options_are_refused_naming_the_option(options, message):
    with pytest.raises(WorldConfigError, match=message):
        WorldConfig(scenario=Scenario(**options))


def test_the_hour_weight_is_set_through_the_scenario_only():
    with pytest.raises(WorldConfigError, match="set scenario.hour_preference"):
        WorldConfig(params=ResponseParams(hour_weight=1.0))
    assert WorldConfig(scenario=Scenario(hour_preference=0.7)).response_params.hour_weight == 0.7
    assert "hour_weight" not in ResponseParams().to_dict()  # default truth files stay as they were


@pytest.mark.parametrize("share", [0.2, 0.9])
def test_reader_share_matches_the_option(scenario_world, share):
    world = scenario_world(Scenario(reader_share=share))
    assert world.truth.user_reader.mean() == pytest.approx(share, abs=0.01)
    assert world.summary.reader_share == pytest.approx(share, abs=0.01)
    read = np.zeros(len(world.truth.user_ids), dtype=bool)
    read[world.truth.user_index(world.dataset.article_reads["user_id"].unique())] = True
    assert not (read & ~world.truth.user_reader).any()  # only readers read
    assert read.mean() > 0.7 * share  # and most of them do within 60 days
    # readers stay the more engaged cardholders
    engagement = world.truth.user_engagement
    assert engagement[world.truth.user_reader].mean() > engagement[~world.truth.user_reader].mean()


def test_default_reader_share_is_about_sixty_percent(scenario_world):
    assert 0.55 < scenario_world(Scenario()).truth.user_reader.mean() < 0.7


def test_spend_predicts_taste_better_than_menu_use_in_a_category_world(scenario_world):
    world = scenario_world(Scenario())
    assert _explained(world, _spend_features(world)) > _explained(world, _menu_features(world)) + 0.1


def test_menu_use_predicts_taste_better_than_spend_in_a_needs_world(scenario_world):
    world = scenario_world(Scenario(taste_channel="needs"))
    menu, spend = _explained(world, _menu_features(world)), _explained(world, _spend_features(world))
    assert menu > spend + 0.1, (menu, spend)
    finance = np.isin(world.truth.topics, FINANCE_TOPICS)
    marketing = ~world.truth.item_transactional
    primary = world.truth.item_topics[marketing].argmax(axis=1)
    assert finance[primary].mean() > 0.45  # most items are about needs (about 23% by default)


def test_merchant_taste_is_hidden_by_the_category_map(scenario_world):
    world = scenario_world(Scenario(taste_channel="merchants"))
    assert world.truth.topics[0].startswith("m") and len(world.truth.topics) == len(_MCCS) + 5
    by_code = _explained(world, _spend_features(world, fine=True))
    by_category = _explained(world, _spend_features(world))
    assert by_code > 1.5 * by_category, (by_code, by_category)
    default = scenario_world(Scenario())
    default_by_category = _explained(default, _spend_features(default))
    assert by_category < 0.5 * default_by_category  # the category map hides most of the taste
    # in the category world the codes add nothing a category does not already say
    assert _explained(default, _spend_features(default, fine=True)) < default_by_category
    tags = world.dataset.content["tags"].dropna().str.split("|").explode()
    assert tags.isin(world.truth.topics).mean() > 0.7 and not tags.isin(TOPICS[:17]).any()


def test_noise_weakens_what_behaviour_says_about_taste(scenario_world):
    clean, noisy = scenario_world(Scenario()), scenario_world(Scenario(noise=1.5))
    assert np.array_equal(clean.truth.user_taste, noisy.truth.user_taste)  # same true taste
    assert _explained(noisy, _spend_features(noisy)) < 0.6 * _explained(clean, _spend_features(clean))


def _topic_tags(world) -> tuple[pd.Series, pd.Series]:
    content = world.dataset.content
    truth = world.truth
    marketing = content.loc[~content["transactional"]]
    rows = truth.content_index(marketing["content_id"].to_numpy())
    names = np.asarray(truth.topics)[truth.item_topics[rows].argmax(axis=1)]
    primary = pd.Series(names, index=marketing.index)
    return marketing["tags"].fillna("").str.split("|"), primary


def test_synonym_tags_never_name_a_topic_and_widen_the_vocabulary(scenario_world):
    world = scenario_world(Scenario(tags="synonyms"))
    tags, _ = _topic_tags(world)
    vocabulary = set(tags.explode()) - set(CONTEXT_TAGS) - {""}
    assert not vocabulary & set(TOPICS)
    assert len(vocabulary) > 2 * len(TOPICS)
    default_tags, _ = _topic_tags(scenario_world(Scenario()))
    assert tags.map(len).sum() == default_tags.map(len).sum()  # one synonym per topic tag


def test_noisy_tags_only_partly_reflect_topics(scenario_world):
    noisy, clean = scenario_world(Scenario(tags="noisy")), scenario_world(Scenario())

    def primary_tagged(world) -> float:
        tags, primary = _topic_tags(world)
        return float(np.mean([topic in names for names, topic in zip(tags, primary, strict=True)]))

    def wrong_tags(world) -> float:
        tags, _ = _topic_tags(world)
        truth = world.truth
        content = world.dataset.content.loc[tags.index]
        rows = truth.content_index(content["content_id"].to_numpy())
        index = {name: k for k, name in enumerate(truth.topics)}
        wrong = [sum(truth.item_topics[row, index[tag]] == 0 for tag in names if tag in index)
                 for row, names in zip(rows, tags, strict=True)]
        return float(np.mean(np.asarray(wrong) > 0))

    assert primary_tagged(clean) == 1.0 and wrong_tags(clean) == 0.0
    assert 0.6 < primary_tagged(noisy) < 0.9
    assert 0.2 < wrong_tags(noisy) < 0.5


def test_hour_preference_shows_in_opens_by_send_hour(scenario_world):
    world = scenario_world(Scenario(hour_preference=1.0))
    truth, data = world.truth, world.dataset
    assert truth.user_peak_hour is not None and truth.params.hour_weight == 1.0
    log = data.push_log.merge(data.content[["content_id", "transactional"]], on="content_id")
    log = log[~log["transactional"]]
    peak = truth.user_peak_hour[truth.user_index(log["user_id"].to_numpy())]
    local = (log["sent_ts"] + pd.Timedelta(hours=8)).dt.hour.to_numpy() + 0.5  # almost everyone is UTC+8
    distance = np.abs((local - peak + 12) % 24 - 12)
    opened = log["opened_ts"].notna().to_numpy()
    near, far = opened[distance <= 3].mean(), opened[distance >= 8].mean()
    assert (distance <= 3).sum() > 2_000 and (distance >= 8).sum() > 2_000
    assert near > 1.5 * far, (near, far)
    # the hour term leaves the item ranking alone: the truth matrix is the hour-neutral probability
    model = truth.response_model()
    users, items = np.arange(50), np.zeros(50, dtype=np.int64)
    assert np.allclose(model.open_probability(users, items), truth.open_prob[users, 0], atol=1e-6)
    at_peak = model.open_probability(users, items, local_hours=truth.user_peak_hour[users])
    assert (at_peak > truth.open_prob[users, 0]).all()


def test_without_hour_preference_opens_do_not_follow_a_personal_hour(scenario_world):
    truth = scenario_world(Scenario(hour_preference=1.0)).truth
    world = scenario_world(Scenario())
    data = world.dataset
    log = data.push_log.merge(data.content[["content_id", "transactional"]], on="content_id")
    log = log[~log["transactional"]]
    peak = truth.user_peak_hour[world.truth.user_index(log["user_id"].to_numpy())]  # same ids, same seed
    local = (log["sent_ts"] + pd.Timedelta(hours=8)).dt.hour.to_numpy() + 0.5
    distance = np.abs((local - peak + 12) % 24 - 12)
    opened = log["opened_ts"].notna().to_numpy()
    near, far = opened[distance <= 3].mean(), opened[distance >= 8].mean()
    assert 0.8 < near / far < 1.25


def test_cli_scenario_with_an_override(tmp_path):
    out = tmp_path / "w"
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--users", "400", "--items", "30", "--days",
                                      "30", "--scenario", "sparse-readers", "--reader-share", "0.5"])
    assert result.exit_code == 0, result.output
    assert "scenario sparse-readers+reader_share" in result.output
    truth = WorldTruth.load(tmp_path / "w.truth.npz")
    assert truth.scenario["reader_share"] == 0.5 and truth.scenario["tags"] == "noisy"
    assert truth.user_reader.mean() == pytest.approx(0.5, abs=0.01)


def test_cli_refuses_an_unknown_scenario_and_writes_nothing(tmp_path):
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "w"), "--scenario", "chaos"])
    assert result.exit_code == 2
    assert "--scenario must be one of categories, merchants, needs, sparse-readers" in result.output
    assert not any(tmp_path.iterdir())
