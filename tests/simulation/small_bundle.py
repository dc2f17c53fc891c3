"""A small LightFM bundle trained on a generated world; shared by the simulation and studio fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from features.loader import Dataset
    from recsys.bundle import ModelBundle


def train_small_bundle(world_dir: Path, out: Path) -> tuple[ModelBundle, Dataset]:
    """Fit a seeded 8-factor, 3-epoch LightFM hybrid at the world's last event, save it at `out`."""
    from features.bundle_inputs import item_metadata
    from features.loader import load_dataset
    from features.pipeline import build_training_matrices
    from recsys.bundle import ModelBundle
    from recsys.models.lightfm_hybrid import LightFMHybrid

    dataset = load_dataset(world_dir)
    as_of = dataset.time_range()[1]
    matrices, builder = build_training_matrices(dataset, as_of)
    model = LightFMHybrid(no_components=8, epochs=3, num_threads=1, random_state=5).fit(matrices)
    bundle = ModelBundle(
        model=model, users=matrices.users, items=matrices.items, feature_state=builder.to_dict(),
        item_meta=item_metadata(dataset.content, matrices.items), user_segments=matrices.user_segments,
        as_of=as_of,
    )
    bundle.save(out)
    return bundle, dataset
