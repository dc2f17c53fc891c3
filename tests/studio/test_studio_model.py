"""The studio's model comes as a bundle directory: the API process never opens the model registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.studio.service import StudioNotConfiguredError, load_bundle
from tests.simulation.small_bundle import train_small_bundle


def test_a_registry_uri_is_refused_with_what_to_do() -> None:
    with pytest.raises(StudioNotConfiguredError, match="registry URI.*recsys serve"):
        load_bundle("models:/qianmian@champion")


def test_a_bundle_directory_is_loaded(studio_world_dir: Path, tmp_path: Path) -> None:
    bundle, _ = train_small_bundle(studio_world_dir, tmp_path / "bundle")
    loaded = load_bundle(str(tmp_path / "bundle"))
    assert list(loaded.items.ids) == list(bundle.items.ids)
