"""Constants and helpers shared by the ranking API tests (imported by name, unlike conftest)."""

from __future__ import annotations

from pathlib import Path

from serving.ready import wait_until_ready  # noqa: F401  (re-exported for the tests)

SCHEDULER = "test-scheduler-token-7f3a"
ADMIN = "test-admin-token-91bc"
SCHEDULER_HEADERS = {"Authorization": f"Bearer {SCHEDULER}"}
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def train_bundle(dataset, path: Path, seed: int = 3, epochs: int = 4) -> Path:
    from features.bundle_inputs import item_metadata
    from features.pipeline import build_training_matrices
    from recsys.bundle import ModelBundle
    from recsys.models.lightfm_hybrid import LightFMHybrid

    as_of = dataset.time_range()[1]
    matrices, builder = build_training_matrices(dataset, as_of)
    model = LightFMHybrid(no_components=8, epochs=epochs, num_threads=1, random_state=seed).fit(matrices)
    bundle = ModelBundle(
        model=model, users=matrices.users, items=matrices.items, feature_state=builder.to_dict(),
        item_meta=item_metadata(dataset.content, matrices.items), user_segments=matrices.user_segments,
        as_of=as_of,
    )
    return bundle.save(path)
