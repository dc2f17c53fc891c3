"""`recsys recommend --dask` and `recsys publish --dask` end to end on a one-worker LocalCluster."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.bundle_inputs import rank_dataset
from qianmian.cli import app
from recsys.config import get_settings

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.fixture
def dask_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_DASK_SCHEDULER", raising=False)
    monkeypatch.setenv("RECSYS_DASK_WORKERS", "1")
    monkeypatch.setenv("RECSYS_DASK_PARTITION_SIZE", "200")
    monkeypatch.setenv("RECSYS_DASK_WORKER_MEMORY", "1GiB")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_recommend_and_publish_on_dask_from_the_command_line(
        dask_env, scale_world, scale_bundle_path, scale_bundle, scale_dataset, redis_url, redis_client,
        key_prefix, tmp_path: Path) -> None:
    from recsys.publication import PublicationStore

    out = tmp_path / "recs.parquet"
    runner = CliRunner()
    result = runner.invoke(app, ["recommend", "--model", str(scale_bundle_path), "--data", str(scale_world),
                                 "--out", str(out), "--k", "3", "--dask", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("part-*.parquet"))) == 3  # 500 cardholders / 200
    expected = rank_dataset(scale_bundle, scale_dataset, scale_dataset.time_range()[1], 3)
    got = pd.read_parquet(out).sort_values(["user_id", "rank"], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected.sort_values(["user_id", "rank"], ignore_index=True))
    assert not list((get_settings().home / "partitions").iterdir())  # staging removed

    result = runner.invoke(app, ["publish", "--model", str(scale_bundle_path), "--data", str(scale_world),
                                 "--redis", redis_url, "--prefix", key_prefix, "--dask", "--json"])
    assert result.exit_code == 0, result.output
    store = PublicationStore(redis_client, key_prefix)
    published = store.load(store.live_version()).manifest["n_users"]
    assert published == scale_dataset.cardholders["user_id"].nunique()


def test_dask_recommend_refuses_a_csv_output(dask_env, scale_world, scale_bundle_path,
                                             tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["recommend", "--model", str(scale_bundle_path), "--data",
                                      str(scale_world), "--out", str(tmp_path / "recs.csv"), "--dask"])
    assert result.exit_code == 2
    assert "directory of Parquet parts" in result.output


def test_validate_on_dask_prints_what_the_whole_load_prints(dask_env, scale_world, scale_dataset,
                                                            tmp_path: Path) -> None:
    runner = CliRunner()
    for flags in ([], ["--dask"]):
        result = runner.invoke(app, ["validate", str(scale_world), *flags])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == scale_dataset.summary()
    bad = tmp_path / "bad"
    bad.mkdir()
    for path in scale_world.iterdir():
        (bad / path.name).write_bytes(path.read_bytes())
    clicks = pd.read_parquet(bad / "menu_clicks.parquet")
    clicks.loc[[3, 7], "user_id"] = "nobody"
    clicks.to_parquet(bad / "menu_clicks.parquet", index=False)
    outputs = {runner.invoke(app, ["validate", str(bad), *flags]).output for flags in ([], ["--dask"])}
    (output,) = outputs
    assert "menu_clicks.parquet, column 'user_id': unknown user_id: not in the cardholders table " \
           "(2 row(s)); first offending rows: row 4 ('nobody'), row 8 ('nobody')" in output
    assert not list((get_settings().home / "partitions").iterdir())  # staging removed


@pytest.mark.parametrize("extra", [[], ["--users", "120"]])
def test_caps_simulate_on_dask_from_the_command_line_writes_the_same_report(
        dask_env, scale_world, tmp_path: Path, extra: list[str]) -> None:
    import json

    runner = CliRunner()
    reports = []
    for flags in ([], ["--dask"]):
        out = tmp_path / f"sim{len(flags)}"
        result = runner.invoke(app, ["caps", "simulate", "--data", str(scale_world), "--policy", "default",
                                     "--days", "5", "--seed", "2", "--out", str(out), *extra, *flags])
        assert result.exit_code == 0, result.output
        report = json.loads((out / "report.json").read_text())
        for outcome in report["outcomes"]:
            outcome.pop("seconds")
        reports.append(report)
    single, on_dask = reports
    assert on_dask["world"] == single["world"]
    total, dask_total = single["outcomes"][0]["total"], on_dask["outcomes"][0]["total"]
    assert {k: v for k, v in dask_total.items() if not isinstance(v, float)} == {
        k: v for k, v in total.items() if not isinstance(v, float)}
    assert dask_total["expected_opens"] == pytest.approx(total["expected_opens"], rel=1e-9)
    assert total["sent"] > 0
    assert not list((get_settings().home / "partitions").iterdir())  # staging removed


def test_caps_simulate_on_dask_reports_a_missing_directory(dask_env, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["caps", "simulate", "--data", str(tmp_path / "nowhere"), "--policy",
                                      "default", "--truth", str(tmp_path / "t.npz"), "--dask"])
    assert result.exit_code == 2
    assert "nowhere" in result.output


def test_train_samples_on_dask_from_the_command_line(dask_env, scale_world, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: {kind: lightfm_hybrid, params: {num_threads: 1, epochs: 2, no_components: 8}}\n"
                      "baselines: {popularity: {kind: popularity}}\nrefit: false\n")
    with caplog.at_level("INFO", logger="recsys.cluster"):
        result = CliRunner().invoke(app, ["train", "--data", str(scale_world), "--config", str(config),
                                          "--sample-users", "300", "--dask", "--no-track", "--no-register",
                                          "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained on a sample of 300 of 500 cardholders" in result.output
    assert any("LocalCluster of 1 workers" in record.getMessage() for record in caplog.records)
    assert not list((get_settings().home / "partitions").iterdir())  # staging removed
