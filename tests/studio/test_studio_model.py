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


def test_recsys_serve_copies_a_model_uri_to_a_local_bundle(studio_world_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from qianmian.commands.serve import local_studio_model
    from recsys.config import get_settings

    bundle, _ = train_small_bundle(studio_world_dir, tmp_path / "bundle")
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        local = local_studio_model((tmp_path / "bundle").resolve().as_uri())
        again = local_studio_model((tmp_path / "bundle").resolve().as_uri())
    finally:
        get_settings.cache_clear()
    assert local == again == (tmp_path / "home" / "studio" / "model").resolve()
    assert list(load_bundle(str(local)).items.ids) == list(bundle.items.ids)
    # the copy replaced the old one whole: no staging directories are left beside it
    assert sorted(path.name for path in local.parent.iterdir()) == ["model"]
