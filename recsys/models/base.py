"""The `Recommender` interface every model implements, and the directory format models are saved in.

A model maps users and items into one space: `user_factors(...) @ item_factors().T` is a score matrix
whose order within a row ranks the items for that user (biases are folded in as extra columns). The
ranking pipeline (`recsys.ranking.top_k`) only ever needs those two matrices, so every model, the
hybrid one and the baselines alike, is served the same way.

Saved form: a directory with `model.json` (model kind, format version, library versions, parameters)
and `arrays.npz` (numeric state, loaded with `allow_pickle=False`). `save` writes into a temporary
sibling directory and renames it into place, so a failed save never leaves a half-written model.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recsys.atomic import atomic_directory
from recsys.matrices import TrainingMatrices

logger = logging.getLogger(__name__)

MANIFEST = "model.json"
ARRAYS = "arrays.npz"

EpochCallback = Callable[[int, "Recommender"], None]
"""Called as `callback(epoch, model)` after each training epoch (epochs count from 1)."""


class ModelError(ValueError):
    """Invalid model parameters or inputs (wrong shapes, unknown indices, calling before fit)."""


class NotFittedError(ModelError):
    """A model used before `fit` (or `load`)."""


class IncompatibleModelError(ModelError):
    """A saved model this code cannot read: another model kind or another format version."""


class Recommender(ABC):
    """A fitted model that represents users and items as factor matrices.

    Subclasses set `kind` (the name recorded in saved models) and `format_version` (bumped whenever
    the saved arrays change meaning), and implement the abstract methods.
    """

    kind: ClassVar[str]
    format_version: ClassVar[int]
    libraries: ClassVar[tuple[str, ...]] = ("numpy", "scipy")

    @abstractmethod
    def fit(self, data: TrainingMatrices, callback: EpochCallback | None = None) -> Self:
        """Fit on `data`; call `callback(epoch, self)` after each epoch. Returns self."""

    @abstractmethod
    def user_factors(self, user_index: np.ndarray, user_features: sp.csr_matrix) -> np.ndarray:
        """float32 [n, d] factors for users at `user_index` (-1: unknown at fit time).

        `user_features` is csr [n, n_user_features], one row per entry of `user_index`, in the
        feature space of the training data (no identity columns). Models that do not use features
        ignore it, but its row count must still match.
        """

    @abstractmethod
    def item_factors(self) -> np.ndarray:
        """float32 [n_items, d] factors of the fitted items, in the training item order."""

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as a flat JSON-serialisable dict (for logging and for `load`).

        The constructor's arguments, read back from the attributes of the same names (every model
        keeps them so), so a new parameter cannot be left out of saved models.
        """
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Numeric state to save (numpy arrays only)."""

    @abstractmethod
    def _restore(self, arrays: Mapping[str, np.ndarray], extra: Mapping[str, Any]) -> None:
        """Set the fitted state from saved arrays and the manifest's `extra` section."""

    def _extra(self) -> dict[str, Any]:
        """JSON-serialisable fitted state beyond arrays (sizes, labels)."""
        return {}

    @property
    @abstractmethod
    def is_fitted(self) -> bool:
        """Whether `fit` or `load` has set the model's state."""

    def _check_fitted(self) -> None:
        """Raise `NotFittedError` unless `fit` or `load` has set the model's state."""
        if not self.is_fitted:
            raise NotFittedError(f"the {self.kind} model is not fitted: call fit first")

    def scores(self, user_index: np.ndarray, user_features: sp.csr_matrix) -> np.ndarray:
        """Dense float32 [n, n_items] scores; convenient for small sets of users (tests, evaluation)."""
        return self.user_factors(user_index, user_features) @ self.item_factors().T

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the model to `directory` (replaced atomically if it exists); returns the path."""
        if not self.is_fitted:
            raise NotFittedError(f"cannot save an unfitted {self.kind} model: call fit first")
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        manifest = {
            "kind": self.kind,
            "format_version": self.format_version,
            "libraries": library_versions(self.libraries),
            "params": self.params(),
            "extra": self._extra(),
        }
        with atomic_directory(target) as staging:
            np.savez(staging / ARRAYS, **self._state())
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        logger.info("saved %s model to %s", self.kind, target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read a model saved by `save`; raise `IncompatibleModelError` for another kind or version."""
        manifest = read_manifest(directory)
        if manifest["kind"] != cls.kind:
            raise IncompatibleModelError(
                f"{directory} holds a {manifest['kind']!r} model, not {cls.kind!r}: "
                f"load it with recsys.models.load_model"
            )
        if manifest["format_version"] != cls.format_version:
            raise IncompatibleModelError(
                f"{directory} was saved in {cls.kind} format version {manifest['format_version']}, "
                f"this code reads version {cls.format_version} "
                f"(saved with {manifest.get('libraries', {})}): retrain the model with this version"
            )
        try:
            model = cls(**manifest["params"])
        except TypeError as error:
            raise IncompatibleModelError(
                f"{directory} holds parameters this code does not take ({error}): retrain the model "
                "with this version"
            ) from error
        with np.load(Path(directory) / ARRAYS, allow_pickle=False) as arrays:
            try:
                model._restore({name: arrays[name] for name in arrays.files}, manifest.get("extra", {}))
            except KeyError as error:
                raise IncompatibleModelError(
                    f"{directory} lacks the saved state {error}: the model is damaged, save it again"
                ) from error
        return model


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The saved model's manifest; `IncompatibleModelError` when the directory is not a saved model."""
    path = Path(directory) / MANIFEST
    if not path.is_file() or not (Path(directory) / ARRAYS).is_file():
        raise IncompatibleModelError(
            f"{directory} is not a saved model (expected {MANIFEST} and {ARRAYS}): check the path"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise IncompatibleModelError(f"{path} is not valid JSON ({error}): the model is damaged") from error
    missing = {"kind", "format_version", "params"} - set(manifest)
    if missing:
        raise IncompatibleModelError(f"{path} lacks {sorted(missing)}: not a model saved by this engine")
    return manifest


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the distributions a model depends on."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def check_at_least_one(**values: int) -> None:
    """Raise `ModelError` naming the first of `values` (parameter name -> value) below 1."""
    for name, value in values.items():
        if int(value) < 1:
            raise ModelError(f"{name} must be >= 1, got {value}")


def check_user_inputs(user_index: np.ndarray, user_features: sp.spmatrix, n_users: int,
                      n_user_features: int | None) -> tuple[np.ndarray, sp.csr_matrix]:
    """Validate `user_factors` arguments; returns them as int64 array and float32 csr."""
    index = np.asarray(user_index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise ModelError(f"user_index must be a 1-d integer array, got shape {index.shape} {index.dtype}")
    index = index.astype(np.int64, copy=False)
    if index.size and (index.min() < -1 or index.max() >= n_users):
        bad = index[(index < -1) | (index >= n_users)][0]
        raise ModelError(
            f"user index {int(bad)} outside [-1, {n_users}): map ids with the model's IdIndex "
            "(-1 for cardholders unknown at fit time)"
        )
    if not sp.issparse(user_features):
        raise ModelError(f"user_features must be a scipy sparse matrix, got {type(user_features).__name__}")
    features = sp.csr_matrix(user_features, dtype=np.float32)
    if features.shape[0] != index.size:
        raise ModelError(f"user_features has {features.shape[0]} rows for {index.size} users: one row each")
    if n_user_features is not None and features.shape[1] != n_user_features:
        raise ModelError(
            f"user_features has {features.shape[1]} columns, the model was fitted with {n_user_features}: "
            "build features with the fitted feature builder"
        )
    return index, features

