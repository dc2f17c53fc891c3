"""Recommenders behind one interface (`Recommender`): LightFM hybrids, popularity, implicit peer."""

from __future__ import annotations

import os
from importlib import import_module

from recsys.models.base import (
    IncompatibleModelError,
    ModelError,
    NotFittedError,
    Recommender,
    read_manifest,
)

# kind -> "module:class"; imported lazily so loading one model does not import every library
MODEL_KINDS = {
    "lightfm_hybrid": "recsys.models.lightfm_hybrid:LightFMHybrid",
    "popularity": "recsys.models.popularity:PopularityRecommender",
    "implicit_peer": "recsys.models.implicit_peer:ImplicitPeer",
    "plain_hybrid": "recsys.models.plain_hybrid:PlainHybrid",
}


def model_class(kind: str) -> type[Recommender]:
    """The Recommender class saved under `kind`."""
    try:
        module_name, class_name = MODEL_KINDS[kind].split(":")
    except KeyError:
        raise IncompatibleModelError(
            f"unknown model kind {kind!r}; known kinds: {sorted(MODEL_KINDS)}"
        ) from None
    return getattr(import_module(module_name), class_name)


def load_model(directory: str | os.PathLike[str]) -> Recommender:
    """Load any saved model, dispatching on the kind recorded in its manifest."""
    return model_class(read_manifest(directory)["kind"]).load(directory)


__all__ = [
    "MODEL_KINDS",
    "IncompatibleModelError",
    "ModelError",
    "NotFittedError",
    "Recommender",
    "load_model",
    "model_class",
]
