"""`recsys train` and `recsys recommend` end to end on a small synthetic world, with a real local MLflow
SQLite store in a temporary directory; and the errors bad input gets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from qianmian.cli import app
from recsys.config import get_settings

pytestmark = pytest.mark.slow

# the gate's mechanics need a model clearly above popularity on the holdout nDCG@10 of this small world:
# appeal from engagement at up to 1.5 (the open-rate appeal at 0-1 lands level with popularity on reads)
FAST = {"model": {"kind": "lightfm_hybrid",
                  "params": {"epochs": 6, "num_threads": 1, "item_appeal_source": "engagement"}},
        "appeal_choices": [0.0, 0.5, 1.0, 1.5],
        "baselines": {"popularity": {"kind": "popularity", "params": {"by_segment": False}},
                      "popularity_segment": {"kind": "popularity", "params": {"by_segment": True}},
                      "implicit_als": {"kind": "implicit_peer",
                                       "params": {"factors": 16, "iterations": 5, "num_threads": 1}}}}
WORSE = {**FAST, "model": {"kind": "lightfm_hybrid",
                           "params": {"epochs": 1, "no_components": 2, "learning_rate": 0.001,
                                      "num_threads": 1}},
         "wide_choices": [],  # the ridge alone would lift even this model above the plain hybrid
         "baselines": {**FAST["baselines"],
                       "plain_hybrid": {"kind": "plain_hybrid", "params": {"num_threads": 1, "epochs": 5}}}}


@pytest.fixture(scope="module")
def home(tmp_path_factory, request) -> Path:
    """RECSYS_HOME in a temporary directory, so MLflow's SQLite store and artifacts live there."""
    path = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("RECSYS_HOME", str(path))
    patch.delenv("RECSYS_MLFLOW_TRACKING_URI", raising=False)
    patch.setenv("RECSYS_REGISTERED_MODEL_NAME", "test-ranker")
    get_settings.cache_clear()
    yield path
    patch.undo()
    get_settings.cache_clear()


def write_config(directory: Path, name: str, data: dict) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def tracker(home: Path):
    from training.tracking import Tracker

    settings = get_settings()
    return Tracker(settings.tracking_uri, settings.artifact_root, "test")


def test_train_logs_registers_and_moves_champion_only_when_better(home: Path, small_world: Path,
                                                                  tmp_path: Path) -> None:
    config = write_config(tmp_path, "fast", FAST)
    bundle_out = tmp_path / "bundle"
    result = invoke("train", "--data", small_world, "--config", config, "--experiment", "test",
                    "--model-out", bundle_out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "run id:" in result.output and "model URI:" in result.output
    assert "champion: ndcg@10" in result.output
    assert (bundle_out / "bundle.json").is_file()
    track = tracker(home)
    champion = track.champion("test-ranker", "ndcg@10")
    assert champion is not None and champion.version == "1"
    run = track.client.get_run(champion.run_id)
    metrics = run.data.metrics
    for key in ("ndcg_at_10", "precision_at_10", "recall_at_10", "map_at_10", "auc", "coverage_at_10",
                "cold.ndcg_at_10", "popularity.ndcg_at_10", "implicit_als.ndcg_at_10",
                "lift.ndcg_at_10.vs_popularity", "open_rate_top1.lightfm", "open_rate_top1.popularity",
                "open_rate_top1.truth_best", "gate.vs_popularity.low", "gate.vs_popularity.high",
                "ndcg_at_10.low", "slice.readers.ndcg_at_10",
                "slice.non_readers.ndcg_at_10.low", "slice.new_cardholders.users"):
        assert key in metrics, key
    # cardholders who never read are evaluated on the pushes they opened, and reported on their own
    assert metrics["slice.non_readers.users"] > 0
    # and on every push of the holdout window, opened or ignored: many more of them
    assert metrics["cold.push_users"] > metrics["slice.non_readers.users"]
    assert 0.0 <= metrics["cold.push_auc"] <= 1.0 and 0.0 <= metrics["push_auc"] <= 1.0
    assert metrics["slice.readers.users"] + metrics["slice.non_readers.users"] == run.data.metrics["users"]
    assert metrics["ndcg_at_10.low"] <= metrics["ndcg_at_10"] <= metrics["ndcg_at_10.high"]
    assert "95% paired-bootstrap interval" in result.output and "per slice" in result.output
    assert metrics["open_rate_top1.lightfm"] <= metrics["open_rate_top1.truth_best"]
    # the push response models are fitted after the ranking model, tracked in its run, saved in its bundle
    for key in ("response.open.ece", "response.open.log_loss", "response.open.base_log_loss",
                "response.mute.brier", "response.pushes.holdout"):
        assert key in metrics, key
    calibration = track.client.download_artifacts(champion.run_id, "response/calibration.json", str(tmp_path))
    curve = json.loads(Path(calibration).read_text())["holdout"]["open"]["curve"]
    assert len(curve) >= 2 and all(0.0 <= point["observed_rate"] <= 1.0 for point in curve)
    from recsys.bundle import ModelBundle

    assert (bundle_out / "response" / "model.json").is_file()
    response = ModelBundle.load(bundle_out).response
    assert response is not None and "fit response models" in result.output
    # the epochs chosen on the validation window (at most the configured 6) are the ones fitted and logged
    run = track.client.get_run(champion.run_id)
    chosen = int(run.data.params["model.params.epochs"])
    assert 1 <= chosen <= 6
    assert len(track.client.get_metric_history(champion.run_id, "epoch.ndcg_at_10")) == chosen
    assert len(track.client.get_metric_history(champion.run_id, "selection.objective_by_epoch")) == 6
    selection = ModelBundle.load(bundle_out).params["selection"]
    assert selection["epochs"] == chosen and selection["wide_weight"] in (0.0, 0.125, 0.25, 0.5)
    artifacts = {item.path for item in track.client.list_artifacts(champion.run_id, "report")}
    assert {"report/metrics.png", "report/epochs.png", "report/scores.png", "report/report.json"} <= artifacts

    # the logged MLflow model answers through the pyfunc interface
    from training.tracking import load_pyfunc

    holders = pd.read_parquet(small_world / "cardholders.parquet")
    pyfunc = load_pyfunc("models:/test-ranker@champion", get_settings().tracking_uri)
    answer = pyfunc.predict(pd.DataFrame({"user_id": holders["user_id"].head(3).tolist() + ["brand-new"]}),
                            params={"k": 4})
    assert list(answer.columns) == ["user_id", "rank", "content_id", "score"]
    assert set(answer["user_id"]) == {*holders["user_id"].head(3), "brand-new"}
    assert answer.groupby("user_id").size().max() == 4

    # a clearly worse model is registered but does not become champion, and the terminal says why; it
    # refits the ranking model only, keeping the champion's response models as they were
    worse = write_config(tmp_path, "worse", WORSE)
    second = invoke("train", "--data", small_world, "--config", worse, "--experiment", "test",
                    "--no-progress", "--response-from", "models:/test-ranker@champion",
                    "--model-out", tmp_path / "bundle-2")
    assert second.exit_code == 0, second.output
    assert "champion unchanged" in second.output
    assert "response models kept from models:/test-ranker@champion" in second.output
    assert "fit response models" not in second.output
    kept = ModelBundle.load(tmp_path / "bundle-2").response
    assert kept is not None and kept.info == response.info
    for target in ("open", "mute"):
        assert np.array_equal(kept.coef[target], response.coef[target])
        assert kept.calibration[target] == response.calibration[target]
    second_run = track.client.get_run(track.client.get_model_version("test-ranker", "2").run_id)
    assert second_run.data.params["response_from"] == "models:/test-ranker@champion"
    assert "response.open.ece" not in second_run.data.metrics  # nothing was fitted to report
    # the gate names the plain hybrid it does not beat, with the paired interval that says so
    assert "not above the baseline(s)" in second.output and "plain_hybrid (" in second.output
    assert track.champion("test-ranker", "ndcg@10").version == "1"

    # the champion serves batch recommendations for every cardholder
    out = tmp_path / "recs.csv"
    recs_result = invoke("recommend", "--model", "models:/test-ranker@champion", "--data", small_world,
                         "--k", 5, "--out", out, "--no-progress")
    assert recs_result.exit_code == 0, recs_result.output
    recs = pd.read_csv(out, dtype={"user_id": str, "content_id": str})
    assert list(recs.columns) == ["user_id", "rank", "content_id", "score"]
    assert set(recs["user_id"]) == set(holders["user_id"])
    assert recs.groupby("user_id")["rank"].max().max() == 5
    content = pd.read_parquet(small_world / "content.parquet").set_index("content_id")
    assert not content.loc[recs["content_id"].unique(), "transactional"].fillna(False).any()
    # and the bundle path gives the same file
    parquet = tmp_path / "recs.parquet"
    assert invoke("recommend", "--model", bundle_out, "--data", small_world, "--k", 5, "--out", parquet,
                  "--no-progress").exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), recs, check_dtype=False)

    # runs are told apart by name, and the registered model says what its champion is
    experiment = track.client.get_experiment_by_name("test").experiment_id
    # MLflow's UI shows this experiment as model development (its runs), not as a GenAI app
    assert track.client.get_experiment(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    names = [run.info.run_name for run in track.client.search_runs([experiment])]
    assert len(names) == len(set(names)) == 2
    assert all(name.startswith(f"test | {small_world.name} | as-of ") for name in names)
    description = track.client.get_registered_model("test-ranker").description
    assert "champion" in description and "recsys models promote" in description

    # the data scientist compares the two trained versions and promotes the second by hand, audited
    compared = invoke("models", "compare", "champion", "2", "--json")
    assert compared.exit_code == 0, compared.output
    ndcg = json.loads(compared.output)["metrics"]["ndcg@10"]
    assert ndcg["first"] == pytest.approx(champion_value := run.data.metrics["ndcg_at_10"])
    assert ndcg["second"] < champion_value
    promoted = invoke("models", "promote", "2", "--reason", "keep the simpler model", "--by", "test")
    assert promoted.exit_code == 0, promoted.output
    assert track.champion("test-ranker", "ndcg@10").version == "2"
    listed = invoke("models", "list")
    assert listed.exit_code == 0 and "test | " in listed.output


def test_bad_input_is_refused_without_registering_anything(home: Path, small_world: Path, two_taste_dir: Path,
                                                           tmp_path: Path) -> None:
    track = tracker(home)
    before = len(track.client.search_model_versions("name='test-ranker'"))

    outside = invoke("train", "--data", small_world, "--as-of", "2001-01-01", "--experiment", "test",
                     "--no-progress", "--model-out", tmp_path / "never")
    assert outside.exit_code != 0 and "outside the data" in outside.output
    assert not (tmp_path / "never").exists()

    other_truth = small_world.with_name(f"{small_world.name}.truth.npz")
    mismatch = invoke("train", "--data", two_taste_dir, "--truth", other_truth, "--no-progress")
    assert mismatch.exit_code != 0 and "truth file lacks 400 cardholder(s)" in mismatch.output

    missing = invoke("train", "--data", tmp_path / "absent", "--no-progress")
    assert missing.exit_code != 0 and "does not exist" in missing.output

    bad_metric = invoke("train", "--data", small_world, "--metric", "accuracy", "--no-progress")
    assert bad_metric.exit_code != 0 and "metric 'accuracy'" in bad_metric.output

    unknown_key = write_config(tmp_path, "typo", {"modle": {}})
    typo = invoke("train", "--data", small_world, "--config", unknown_key, "--no-progress")
    assert typo.exit_code != 0 and "modle" in typo.output

    empty = tmp_path / "empty"
    empty.mkdir()
    pd.read_parquet(small_world / "cardholders.parquet").to_parquet(empty / "cardholders.parquet")
    pd.read_parquet(small_world / "content.parquet").to_parquet(empty / "content.parquet")
    no_events = invoke("train", "--data", empty, "--as-of", "2026-10-01", "--no-progress")
    assert no_events.exit_code != 0 and "no article read or opened push" in no_events.output

    dangling = tmp_path / "dangling"
    dangling.mkdir()
    for table in small_world.glob("*.parquet"):
        frame = pd.read_parquet(table)
        if table.stem == "article_reads":
            frame.loc[0, "content_id"] = "no-such-article"
        frame.to_parquet(dangling / table.name)
    unknown_id = invoke("train", "--data", dangling, "--no-progress")
    assert unknown_id.exit_code != 0 and "no-such-article" in unknown_id.output

    no_bundle = invoke("train", "--data", small_world, "--no-progress",
                       "--response-from", tmp_path / "nowhere")
    assert no_bundle.exit_code != 0 and "nowhere" in no_bundle.output and "load data" not in no_bundle.output
    no_such_model = invoke("train", "--data", small_world, "--no-progress",
                           "--response-from", "models:/no-such-model@champion")
    assert no_such_model.exit_code != 0 and "no-such-model" in no_such_model.output
    for extra, message in ((["--control-share", "0.1"], "give it with --decided-since"),
                           (["--decided-since", "last autumn"], "--decided-since 'last autumn' is not"),
                           (["--decided-since", "2026-09-01", "--response-from", tmp_path / "b"],
                            "give one of the two"),
                           (["--decided-since", "2026-09-01", "--control-share", "0.7"], "--control-share")):
        refused = invoke("train", "--data", small_world, "--no-progress", *extra)
        assert refused.exit_code != 0 and message in refused.output, refused.output
        assert "load data" not in refused.output

    assert len(track.client.search_model_versions("name='test-ranker'")) == before

    out = tmp_path / "recs.parquet"
    unknown = invoke("recommend", "--model", "models:/no-such-model@champion", "--data", small_world,
                     "--k", 3, "--out", out, "--no-progress")
    assert unknown.exit_code != 0 and "no-such-model" in unknown.output
    fake = tmp_path / "old-bundle"
    fake.mkdir()
    (fake / "bundle.json").write_text(json.dumps({"format_version": 0, "versions": {"qianmian": "0.0.1"}}))
    old = invoke("recommend", "--model", fake, "--data", small_world, "--k", 3, "--out", out, "--no-progress")
    assert old.exit_code != 0 and "format version 0" in old.output
    wrong_suffix = invoke("recommend", "--model", fake, "--data", small_world, "--out", tmp_path / "r.txt")
    assert wrong_suffix.exit_code != 0 and ".parquet or .csv" in wrong_suffix.output
    assert not out.exists() and not list(tmp_path.glob(".recs*"))


def test_unwritable_outputs_are_refused_before_any_work(home: Path, small_world: Path,
                                                        tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    blocked = invoke("train", "--data", small_world, "--no-track", "--no-progress",
                     "--model-out", blocker / "bundle")
    assert blocked.exit_code == 2 and "--model-out" in blocked.output and str(blocker) in blocked.output
    assert "load data" not in blocked.output  # refused before the first stage
    onto_file = invoke("train", "--data", small_world, "--no-track", "--no-progress", "--model-out", blocker)
    assert onto_file.exit_code == 2 and "is a file" in onto_file.output

    recs = invoke("recommend", "--model", tmp_path / "no-bundle-needed", "--data", small_world, "--k", 3,
                  "--out", blocker / "recs.csv", "--no-progress")
    assert recs.exit_code == 2 and "--out" in recs.output and str(blocker) in recs.output


def test_the_whole_job_runs_blas_on_one_thread(monkeypatch, tmp_path: Path) -> None:
    """LightFM's epochs (OpenMP) and the response fit's thread fill the cores: a second BLAS thread only
    spins beside them, and one setting for the whole job keeps every product's rounding the same."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import training.job as job
    from training.config import load_config

    seen = []
    monkeypatch.setattr(job, "_train", lambda options, echo: seen.extend(blas_threads()))
    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        job.train(job.TrainOptions(data_dir=tmp_path, config=load_config(None)))
        assert blas_threads() == before  # restored when the job ends
    assert seen and set(seen) == {1}


def test_the_response_models_can_learn_only_from_pushes_the_decision_did_not_choose(
        home: Path, small_world: Path, tmp_path: Path) -> None:
    from recsys.bundle import ModelBundle
    from recsys.control import in_control

    pushes = pd.read_parquet(small_world / "push_log.parquet")
    sent = pd.to_datetime(pushes["sent_ts"], utc=True)
    since = sent.max() - pd.Timedelta(days=20)
    config = write_config(tmp_path, "fast", FAST)
    result = invoke("train", "--data", small_world, "--config", config, "--experiment", "decided",
                    "--no-progress", "--no-register", "--model-out", tmp_path / "bundle",
                    "--decided-since", since.isoformat(), "--control-share", "0.3")
    assert result.exit_code == 0, result.output
    assert "pushes the decision did not choose" in result.output
    response = ModelBundle.load(tmp_path / "bundle").response
    assert response is not None
    # the published fit learned from the pushes before `since` and the control share's after, not the rest
    treated_after = int(((sent >= since) & ~in_control(pushes["user_id"].astype(str), 0.3)).sum())
    assert treated_after > 0 and response.info["pushes"] <= len(pushes) - treated_after
    track = tracker(home)
    experiment = track.client.get_experiment_by_name("decided").experiment_id
    params = track.client.search_runs([experiment])[0].data.params
    assert params["control_share"] == "0.3" and pd.Timestamp(params["decided_since"]) == since
