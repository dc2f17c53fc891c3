"""`recsys publish` and `recsys events export` from the command line; popularity fallbacks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from serving_support import SCHEDULER_HEADERS
from typer.testing import CliRunner

from qianmian.cli import app

pytestmark = pytest.mark.redis


def test_publish_command(bundle_path, world_dir, redis_url, key_prefix, store, redis_client) -> None:
    result = CliRunner().invoke(app, ["publish", "--model", str(bundle_path), "--data", str(world_dir),
                                      "--redis", redis_url, "--prefix", key_prefix, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert store.live_version() == report["version"]
    assert report["users"] == 600
    assert store.load(report["version"]).manifest["fingerprint"]


def test_publish_command_errors_are_clear(world_dir, redis_url, key_prefix, tmp_path) -> None:
    missing = str(tmp_path / "missing")
    result = CliRunner().invoke(app, ["publish", "--model", missing, "--data", str(world_dir),
                                      "--redis", redis_url, "--prefix", key_prefix])
    assert result.exit_code == 1
    assert "neither an existing bundle path" in result.output


def test_events_export_command(api, published, dataset, settings, daytime, tmp_path, monkeypatch) -> None:
    holders = dataset.cardholders
    user = holders.loc[holders["push_opt_in"].astype("boolean").fillna(True), "user_id"].astype(str).iloc[40]
    ranked = api.post("/v1/rank", json={"user_id": user, "now": daytime, "reserve": True},
                      headers=SCHEDULER_HEADERS).json()
    assert ranked["push_id"], ranked
    posted = api.post("/v1/events", headers=SCHEDULER_HEADERS, json={"events": [
        {"event_id": "cli-1", "type": "sent", "user_id": user, "push_id": ranked["push_id"],
         "ts": daytime}]})
    assert posted.status_code == 200, posted.text
    result = CliRunner().invoke(app, ["events", "export", "--out", str(tmp_path / "out"),
                                      "--log", str(settings.event_log_path)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "out" / "push_log.parquet")
    assert frame["push_id"].tolist() == [ranked["push_id"]]


def test_segment_popularity_for_models_without_features(dataset, store, api, daytime, tmp_path) -> None:
    """A model that ignores features (implicit ALS): unknown cardholders get their tier's popularity."""
    from features.bundle_inputs import item_metadata
    from features.pipeline import build_training_matrices
    from publishing.publish import publish
    from recsys.bundle import ModelBundle
    from recsys.fallback import WINDOW_DAYS as POPULARITY_WINDOW_DAYS
    from recsys.models.implicit_peer import ImplicitPeer

    as_of = dataset.time_range()[1]
    matrices, builder = build_training_matrices(dataset, as_of)
    model = ImplicitPeer(factors=8, iterations=3).fit(matrices)
    bundle = ModelBundle(model=model, users=matrices.users, items=matrices.items,
                         feature_state=builder.to_dict(),
                         item_meta=item_metadata(dataset.content, matrices.items),
                         user_segments=matrices.user_segments, as_of=as_of)
    report = publish(bundle, dataset, store)
    assert report.affine_features is False

    body = api.post("/v1/rank", headers=SCHEDULER_HEADERS, json={
        "user_id": "brand-new", "now": daytime, "k": 1, "features": {"card_tier=gold": 1.0}}).json()
    assert body["fallback_source"] == "segment_popularity"
    assert body["items"][0]["reason"] == "popular with gold cardholders"

    # Independent count: reads and opened pushes in the window, by gold cardholders and overall.
    start = as_of - pd.Timedelta(days=POPULARITY_WINDOW_DAYS)
    reads = dataset.article_reads
    reads = reads[(reads["ts"] > start) & (reads["ts"] <= as_of)][["user_id", "content_id"]]
    pushes = dataset.push_log
    opened_ts = pushes["opened_ts"]
    opened = pushes[opened_ts.notna() & (opened_ts > start) & (opened_ts <= as_of)]
    events = pd.concat([reads, opened[["user_id", "content_id"]]])
    tiers = dataset.cardholders.set_index("user_id")["card_tier"]
    overall = events["content_id"].value_counts()
    gold = events[events["user_id"].map(tiers) == "gold"]["content_id"].value_counts()
    score = 0.8 * gold / gold.max() + 0.2 * (overall / overall.max()).reindex(gold.index)
    ranked = api.post("/v1/rank", headers=SCHEDULER_HEADERS, json={
        "user_id": "brand-new", "now": daytime, "k": 50, "features": {"card_tier=gold": 1.0}}).json()["items"]
    eligible = [item["content_id"] for item in ranked]
    expected = score.reindex(eligible).fillna(0.2 * (overall / overall.max()).reindex(eligible).fillna(0.0))
    assert ranked[0]["content_id"] == expected.idxmax()
    np.testing.assert_allclose([item["score"] for item in ranked], expected.to_numpy(), atol=1e-5)


def test_serve_publishes_its_model_once(bundle_path, world_dir, redis_url, key_prefix, store, redis_client,
                                        monkeypatch) -> None:
    """`recsys serve --model URI --data DIR` publishes unless that very bundle is already live."""
    from qianmian.commands.serve import ensure_published
    from recsys.config import get_settings

    monkeypatch.setenv("RECSYS_REDIS_URL", redis_url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", key_prefix)
    get_settings.cache_clear()
    try:
        ensure_published(str(bundle_path), world_dir)
        first = store.live_version()
        assert first is not None
        ensure_published(str(bundle_path), world_dir)
        assert store.live_version() == first and store.versions() == [first]
    finally:
        get_settings.cache_clear()
