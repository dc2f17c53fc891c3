"""`recsys models list | show | compare | promote` against a real MLflow SQLite store under RECSYS_HOME."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from qianmian.cli import app
from recsys.config import get_settings
from training.promotion import PromotionError, audit_path, audit_records, promote
from training.tracking import CHAMPION, Registry, Tracker, TrackingError, run_name

WHEN = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """RECSYS_HOME with one MLflow store for the module (its schema takes seconds to create)."""
    path = tmp_path_factory.mktemp("models-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("RECSYS_HOME", str(path))
    patch.delenv("RECSYS_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    yield path
    patch.undo()
    get_settings.cache_clear()


def registered(home: Path, name: str, ndcgs: list[float]) -> Tracker:
    """`name` with one version per nDCG@10 value, each from a run that logged it; v1 is the champion."""
    settings = get_settings()
    tracker = Tracker(settings.tracking_uri, settings.artifact_root, "models-test")
    tracker.client.create_registered_model(name)
    for index, ndcg in enumerate(ndcgs):
        as_of = f"2026-10-{24 + 7 * index:02d}T23:59:00+00:00"
        with tracker.run(f"models-test | world | as-of {as_of[:10]}") as run:
            run.log_params({"evaluation.metric": "ndcg@10", "as_of": as_of, "data_dir": "/data/world"})
            run.log_metrics({"ndcg@10": ndcg, "recall@10": ndcg * 2, "auc": 0.8 + index / 100, "users": 500,
                             "cold.ndcg@10": ndcg / 2, "popularity.ndcg@10": 0.1, "time.fit": 3.0})
        tracker.client.create_model_version(name, source=tracker.artifact_root.as_uri(), run_id=run.run_id)
    tracker.set_champion(name, "1")
    return tracker


def invoke(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def test_list_shows_every_version_with_alias_run_metric_and_creation(home: Path) -> None:
    registered(home, "list-ranker", [0.1919, 0.1940])
    result = invoke("models", "list", "--name", "list-ranker")
    assert result.exit_code == 0, result.output
    assert "0.1919" in result.output and "0.1940" in result.output
    assert "champion" in result.output and "models-test | world | as-of 2026-10-31" in result.output
    data = json.loads(invoke("models", "list", "--name", "list-ranker", "--json").output)
    assert [row["version"] for row in data["versions"]] == ["2", "1"]
    assert [row["aliases"] for row in data["versions"]] == [[], ["champion"]]
    assert data["versions"][1]["value"] == pytest.approx(0.1919)
    assert data["versions"][0]["as_of"] == "2026-10-31T23:59:00+00:00"
    assert pd.Timestamp(data["versions"][0]["created"]).tzinfo is not None


def test_show_and_compare_give_the_headline_metrics_side_by_side(home: Path) -> None:
    registered(home, "compare-ranker", [0.1919, 0.1940])
    shown = invoke("models", "show", "champion", "--name", "compare-ranker")
    assert shown.exit_code == 0, shown.output
    assert "compare-ranker version 1 (champion)" in shown.output
    assert "ndcg@10" in shown.output and "0.1919" in shown.output
    assert "popularity" not in shown.output and "time." not in shown.output  # baselines stay in the run
    compared = invoke("models", "compare", "champion", "2", "--name", "compare-ranker", "--json")
    metrics = json.loads(compared.output)["metrics"]
    assert metrics["ndcg@10"] == {"first": pytest.approx(0.1919), "second": pytest.approx(0.1940)}
    assert set(metrics) == {"ndcg@10", "recall@10", "auc", "cold.ndcg@10"}
    table = invoke("models", "compare", "1", "2", "--name", "compare-ranker")
    assert "+0.0021" in table.output  # v2 - v1 on nDCG@10
    assert "different data or holdout periods" in table.output  # different as-of times

    unknown = invoke("models", "show", "9", "--name", "compare-ranker")
    assert unknown.exit_code == 1 and "has no version 9 (versions: 1, 2)" in unknown.output
    no_model = invoke("models", "list", "--name", "no-such-ranker")
    assert no_model.exit_code == 1 and "no registered model 'no-such-ranker'" in no_model.output
    assert "compare-ranker" in no_model.output  # the names the store does hold


def test_promote_moves_the_alias_and_records_who_when_why_and_the_metrics(home: Path) -> None:
    tracker = registered(home, "promote-ranker", [0.1919, 0.1940])
    audit = audit_path(home)
    before = len(audit_records(audit))

    missing = invoke("models", "promote", "2", "--name", "promote-ranker")
    assert missing.exit_code == 2 and "--reason" in missing.output
    blank = invoke("models", "promote", "2", "--name", "promote-ranker", "--reason", "  ")
    assert blank.exit_code == 1 and "--reason is required" in blank.output
    assert tracker.champion("promote-ranker", "ndcg@10").version == "1"

    result = invoke("models", "promote", "2", "--name", "promote-ranker", "--reason",
                    "holds up on the November replay", "--by", "li.wei")
    assert result.exit_code == 0, result.output
    assert "version 1 -> 2 by li.wei" in result.output
    assert tracker.champion("promote-ranker", "ndcg@10").version == "2"
    records = audit_records(audit, "promote-ranker")
    assert len(audit_records(audit)) == before + 1 and len(records) == 1
    record = records[0]
    assert (record["version"], record["previous"], record["by"]) == ("2", "1", "li.wei")
    assert record["reason"] == "holds up on the November replay"
    assert record["metrics"]["ndcg@10"] == pytest.approx(0.1940)
    assert record["previous_metrics"]["ndcg@10"] == pytest.approx(0.1919)
    assert pd.Timestamp(record["at"]).tzinfo is not None
    tags = Registry(get_settings().tracking_uri).version("promote-ranker", "2").tags
    assert tags["champion.promoted_by"] == "li.wei" and tags["champion.previous"] == "1"
    assert tags["champion.reason"] == "holds up on the November replay"
    shown = invoke("models", "show", "2", "--name", "promote-ranker")
    assert "by li.wei (from version 1): holds up on the November replay" in shown.output

    again = invoke("models", "promote", "2", "--name", "promote-ranker", "--reason", "again")
    assert again.exit_code == 1 and "already the champion" in again.output
    assert len(audit_records(audit)) == before + 1

    # without --by, the OS user is recorded
    back = invoke("models", "promote", "1", "--name", "promote-ranker", "--reason", "roll back")
    assert back.exit_code == 0, back.output
    assert audit_records(audit, "promote-ranker")[-1]["by"].strip()


def test_an_audit_that_cannot_be_written_leaves_the_champion_where_it_was(home: Path, tmp_path: Path) -> None:
    registered(home, "audit-ranker", [0.19, 0.20])
    registry = Registry(get_settings().tracking_uri)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="audit file"):
        promote(registry, "audit-ranker", "2", "better", "li.wei", WHEN, blocker / "audit.jsonl")
    assert registry.aliases("audit-ranker")[CHAMPION] == "1"
    if Path("/dev/full").exists():  # the append itself fails after the alias moved: it moves back
        with pytest.raises(OSError):
            promote(registry, "audit-ranker", "2", "better", "li.wei", WHEN, Path("/dev/full"))
        assert registry.aliases("audit-ranker")[CHAMPION] == "1"
    with pytest.raises(PromotionError, match="time zone"):
        promote(registry, "audit-ranker", "2", "better", "li.wei", WHEN.replace(tzinfo=None), tmp_path / "a")
    with pytest.raises(TrackingError, match="not a version number"):
        promote(registry, "audit-ranker", "two", "better", "li.wei", WHEN, tmp_path / "a")


def test_reading_a_missing_store_refuses_without_creating_it(tmp_path: Path, monkeypatch,
                                                             two_taste_dir: Path) -> None:
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.setenv("RECSYS_HOME", str(empty))
    monkeypatch.delenv("RECSYS_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    try:
        listed = invoke("models", "list")
        store = empty.resolve() / "mlflow.db"
        assert listed.exit_code == 2 and f"no MLflow store at {store}" in listed.output
        assert "RECSYS_HOME" in listed.output
        with pytest.raises(TrackingError, match="no MLflow store"):
            Registry(get_settings().tracking_uri)
        recs = invoke("recommend", "--model", "models:/qianmian-push-ranker@champion",
                      "--data", two_taste_dir, "--out", tmp_path / "recs.csv", "--no-progress")
        assert recs.exit_code == 1 and "no MLflow store" in recs.output
        assert not (tmp_path / "recs.csv").exists()
    finally:
        get_settings.cache_clear()
    assert list(empty.iterdir()) == []


def test_run_names_tell_runs_apart() -> None:
    as_of = pd.Timestamp("2026-10-31T23:59:00Z")
    first = run_name("qianmian", Path("/data/world-20k"), as_of, datetime(2026, 11, 1, 2, 3, 4, tzinfo=UTC))
    assert first == "qianmian | world-20k | as-of 2026-10-31 23:59 | at 2026-11-01 02:03:04 UTC"
    second = run_name("qianmian", Path("/data/world-20k"), as_of, datetime(2026, 11, 1, 2, 9, 0, tzinfo=UTC))
    assert first != second  # same data and as-of, retrained later
