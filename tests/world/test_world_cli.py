"""`recsys synth`: arguments, safe output handling and determinism."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.loader import load_dataset
from qianmian.cli import app
from worlds import WorldConfig, WorldConfigError, WorldOutputError, WorldTruth, generate_world
from worlds import generator as generator_module

runner = CliRunner()


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def synth(*args: str):
    return runner.invoke(app, ["synth", *args])


def test_cli_writes_a_valid_world_and_the_truth_beside_it(tmp_path):
    result = synth("--out", str(tmp_path / "w"), "--users", "300", "--items", "30", "--days", "30")
    assert result.exit_code == 0, result.output
    assert "cardholders" in result.output and "oracle" in result.output
    assert (tmp_path / "w.truth.npz").is_file()
    assert len(load_dataset(tmp_path / "w").cardholders) == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w", "w.truth.npz"]  # no temporary leftovers


def test_cli_csv_format_and_explicit_truth_path(tmp_path):
    truth = tmp_path / "hidden" / "t.npz"
    result = synth("--out", str(tmp_path / "w"), "--users", "200", "--items", "20", "--days", "20",
                   "--format", "csv", "--truth", str(truth), "--end", "2025-06-30")
    assert result.exit_code == 0, result.output
    assert truth.is_file()
    assert all(path.suffix == ".csv" for path in (tmp_path / "w").iterdir())
    first, last = load_dataset(tmp_path / "w").time_range()
    assert pd.Timestamp("2025-06-11T00:00:00Z") <= first
    assert pd.Timestamp("2025-06-29T00:00:00Z") <= last <= pd.Timestamp("2025-06-30T23:59:59Z")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "0"], "--users must be at least 1"),
        (["--users", "-5"], "--users must be at least 1"),
        (["--items", "2"], "--items must be between"),
        (["--days", "0"], "--days must be between"),
        (["--seed", "-1"], "--seed must be a non-negative"),
        (["--format", "xlsx"], "--format must be parquet or csv"),
        (["--end", "not-a-date"], "--end"),
    ],
)
def test_bad_arguments_give_clear_errors_and_write_nothing(tmp_path, args, message):
    result = synth("--out", str(tmp_path / "w"), *args)
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "w").exists()
    assert not (tmp_path / "w.truth.npz").exists()


def test_refuses_a_non_empty_out_unless_forced(tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    (out / "cardholders.csv").write_text("user_id\nu1\n")
    result = synth("--out", str(out), "--users", "50", "--items", "10", "--days", "10")
    assert result.exit_code == 2
    assert "not empty" in result.output and "--force" in result.output
    assert (out / "cardholders.csv").read_text() == "user_id\nu1\n"
    result = synth("--out", str(out), "--users", "50", "--items", "10", "--days", "10", "--force")
    assert result.exit_code == 0, result.output
    assert len(load_dataset(out).cardholders) == 50
    assert not (out / "cardholders.csv").exists()


def test_force_never_deletes_files_that_are_not_contract_tables(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(WorldOutputError, match="not contract tables"):
        generate_world(WorldConfig(users=20, items=10, days=5), out, force=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_an_empty_existing_out_is_used(tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    generate_world(WorldConfig(users=20, items=10, days=5), out)
    assert (out / "cardholders.parquet").is_file()


def test_truth_inside_the_data_directory_is_refused(tmp_path):
    with pytest.raises(WorldOutputError, match="outside"):
        generate_world(WorldConfig(users=20, items=10, days=5), tmp_path / "w",
                       truth=tmp_path / "w" / "t.npz")
    assert not (tmp_path / "w").exists()


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "w").write_text("x")
    result = synth("--out", str(tmp_path / "w"), "--users", "10", "--items", "10", "--days", "5")
    assert result.exit_code == 2 and "not a directory" in result.output


def test_a_failed_run_leaves_nothing_half_written(tmp_path, monkeypatch):
    monkeypatch.setattr(generator_module, "BLOCK_USERS", 100)
    out = tmp_path / "w"

    def fail_midway(done: int, total: int) -> None:
        if done >= 200:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        generate_world(WorldConfig(users=500, items=10, days=10), out, progress=fail_midway)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_forced_run_keeps_the_previous_world(tmp_path, monkeypatch):
    out = tmp_path / "w"
    generate_world(WorldConfig(users=50, items=10, days=5, seed=1), out)
    before = file_bytes(out)
    truth_before = (tmp_path / "w.truth.npz").read_bytes()

    def fail(done: int, total: int) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        generate_world(WorldConfig(users=50, items=10, days=5, seed=2), out, force=True, progress=fail)
    assert file_bytes(out) == before
    assert (tmp_path / "w.truth.npz").read_bytes() == truth_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w", "w.truth.npz"]


@pytest.mark.slow
def test_same_seed_gives_byte_identical_tables_and_truth(tmp_path, monkeypatch):
    monkeypatch.setattr(generator_module, "BLOCK_USERS", 700)  # several blocks per run
    config = WorldConfig(users=2_000, items=40, days=45, seed=3)
    first = generate_world(config, tmp_path / "a")
    second = generate_world(config, tmp_path / "b")
    other = generate_world(WorldConfig(users=2_000, items=40, days=45, seed=4), tmp_path / "c")
    assert file_bytes(first.out) == file_bytes(second.out)
    assert first.truth.read_bytes() == second.truth.read_bytes()
    different = file_bytes(other.out)
    assert all(different[name] != data for name, data in file_bytes(first.out).items())


def test_config_rejects_a_naive_end_time():
    with pytest.raises(WorldConfigError, match="time zone"):
        WorldConfig(end=pd.Timestamp("2026-01-01"))


def test_refuses_to_replace_an_existing_truth_file_unless_forced(tmp_path):
    (tmp_path / "w.truth.npz").write_bytes(b"an older truth")
    with pytest.raises(WorldOutputError, match="already exists"):
        generate_world(WorldConfig(users=20, items=10, days=5), tmp_path / "w")
    assert not (tmp_path / "w").exists()
    assert (tmp_path / "w.truth.npz").read_bytes() == b"an older truth"
    generate_world(WorldConfig(users=20, items=10, days=5), tmp_path / "w", force=True)
    assert len(WorldTruth.load(tmp_path / "w.truth.npz").user_ids) == 20


def test_an_unwritable_truth_path_is_a_clear_error_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = synth("--out", str(tmp_path / "w"), "--users", "10", "--items", "10", "--days", "5",
                   "--truth", str(blocker / "t.npz"))
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "writable" in result.output and str(blocker) in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]
