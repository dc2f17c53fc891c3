"""Atomic writes: the new file or directory appears whole, or the old one stays and nothing is left over."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.atomic import atomic_directory, atomic_file, write_text


def test_a_file_is_replaced_whole_and_keeps_its_suffix(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    write_text(target, "old")
    with atomic_file(target) as temporary:
        assert temporary.suffix == ".json" and temporary.parent == target.parent
        temporary.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_a_failed_file_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = write_text(tmp_path / "data.parquet", "old")
    with pytest.raises(RuntimeError), atomic_file(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.parquet"]


def test_a_directory_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with atomic_directory(target) as staging:
        (staging / "a").write_text("1")
    with atomic_directory(target) as staging:
        (staging / "b").write_text("2")
        assert (target / "a").exists()
    assert [p.name for p in target.iterdir()] == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_a_failed_directory_write_leaves_the_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with atomic_directory(target) as staging:
        (staging / "a").write_text("1")
    with pytest.raises(OSError), atomic_directory(target) as staging:
        (staging / "b").write_text("2")
        raise OSError("disk full")
    assert [p.name for p in target.iterdir()] == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
