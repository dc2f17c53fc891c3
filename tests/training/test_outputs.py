"""Output paths are checked before any work: writable folders pass, files in the way do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.outputs import OutputPathError, check_output_path


def test_a_new_path_under_a_writable_folder_passes(tmp_path: Path) -> None:
    check_output_path(tmp_path / "not" / "yet" / "there" / "recs.csv", "--out")
    check_output_path(tmp_path / "bundle", "--model-out", directory=True)
    (tmp_path / "existing").mkdir()
    check_output_path(tmp_path / "existing", "--model-out", directory=True)


def test_a_file_in_the_way_is_refused_with_the_option_and_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OutputPathError, match=r"--out .*a-file is not a directory"):
        check_output_path(blocker / "recs.csv", "--out")
    with pytest.raises(OutputPathError, match="--model-out .* is a file"):
        check_output_path(blocker, "--model-out", directory=True)
    with pytest.raises(OutputPathError, match="--out .* is a directory"):
        check_output_path(tmp_path, "--out")
