"""The champion lookup and run failures against a real local MLflow SQLite store."""

from __future__ import annotations

import pytest

from training.tracking import Tracker, TrackingError


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    """One store for the module (creating its schema takes seconds); each test uses its own model name."""
    root = tmp_path_factory.mktemp("tracking")
    return Tracker(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", "tracking-test")


def test_no_model_and_no_alias_mean_no_champion_and_an_alias_gives_its_metric(tracker: Tracker) -> None:
    assert tracker.champion("ranker", "ndcg@10") is None
    with tracker.run("first") as run:
        run.log_metrics({"ndcg@10": 0.25})
    client = tracker.client
    client.create_registered_model("ranker")
    version = client.create_model_version("ranker", source=tracker.artifact_root.as_uri(), run_id=run.run_id)
    assert tracker.champion("ranker", "ndcg@10") is None
    tracker.set_champion("ranker", str(version.version))
    champion = tracker.champion("ranker", "ndcg@10")
    assert champion is not None
    assert (champion.version, champion.run_id, champion.value) == (str(version.version), run.run_id, 0.25)


def test_an_mlflow_failure_inside_a_run_is_a_tracking_error_and_fails_the_run(tracker: Tracker) -> None:
    with pytest.raises(TrackingError, match="failed"), tracker.run("broken") as run:
        run.log_params({"a": 1})
        run.log_params({"a": 2})  # MLflow refuses to change a logged parameter
    assert tracker.client.get_run(run.run_id).info.status == "FAILED"


def test_pointing_the_champion_at_a_missing_version_is_a_tracking_error(tracker: Tracker) -> None:
    tracker.client.create_registered_model("empty-ranker")
    with pytest.raises(TrackingError, match="cannot point 'champion'"):
        tracker.set_champion("empty-ranker", "7")


def test_experiments_are_tagged_as_model_development_for_the_mlflow_ui(tracker: Tracker) -> None:
    old = tracker.client.create_experiment("made-before-the-tag")  # as older versions created them
    assert "mlflow.experimentKind" not in tracker.client.get_experiment(old).tags
    later = Tracker(tracker.tracking_uri, tracker.artifact_root, "made-before-the-tag")
    with later.run("tagged"):
        pass
    assert tracker.client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    with tracker.run("new"):
        pass
    kind = tracker.client.get_experiment_by_name("tracking-test").tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"
