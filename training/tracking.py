"""MLflow: runs, the bundle as a pyfunc model, registration, the `champion` alias, model URIs.

The only module that imports mlflow. The store is a local SQLite database with artifacts on disk
(`get_settings().tracking_uri` / `artifact_root`); nothing leaves the machine.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# set before mlflow is imported: it reads them at import time
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.pyfunc import PyFuncModel, PythonModel, PythonModelContext  # noqa: E402

logger = logging.getLogger(__name__)

CHAMPION = "champion"
MODEL_ARTIFACT = "model"
BUNDLE_ARTIFACT = "bundle"


class TrackingError(ValueError):
    """A model URI that cannot be resolved, or a tracking store that cannot be used."""


def metric_key(name: str) -> str:
    """An MLflow-safe metric name: `ndcg@10` -> `ndcg_at_10`."""
    return name.replace("@", "_at_")


class BundlePyfunc(PythonModel):
    """MLflow pyfunc face of a model bundle: input rows with `user_id` -> top-k rows per cardholder.

    Uses the bundle's stored features (as of its training time) and item metadata; the validity
    window is checked at the bundle's as-of time unless `params={"as_of": ...}` is given.
    """

    def load_context(self, context: PythonModelContext) -> None:
        from recsys.bundle import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        import numpy as np
        import scipy.sparse as sp

        from recsys.bundle import build_eligibility, recommendation_rows
        from recsys.ranking import top_k
        from recsys.times import utc_timestamp

        params = params or {}
        k = int(params.get("k", 10))
        as_of = utc_timestamp(params.get("as_of") or self.bundle.as_of)
        ids = model_input["user_id"].astype(str).to_numpy(dtype=object)
        factors = self.bundle.user_factors_for(ids)
        tiers = (model_input["card_tier"].astype("string").fillna("unknown").to_numpy(dtype=object)
                 if "card_tier" in model_input else np.full(len(ids), "unknown", dtype=object))
        eligibility = build_eligibility(self.bundle.item_meta, self.bundle.items, as_of, tiers,
                                        sp.csr_matrix((len(ids), len(self.bundle.items)), dtype=bool))
        indices, scores = top_k(factors, self.bundle.model.item_factors(), k, eligibility)
        return recommendation_rows(ids, indices, scores, self.bundle.items)


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    value: float | None


class Tracker:
    """One MLflow run in an experiment of a local store; use as a context manager."""

    def __init__(self, tracking_uri: str, artifact_root: Path, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = Path(artifact_root)
        self.experiment = experiment
        self.run_id: str | None = None
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = (self.artifact_root / self.experiment).resolve()
        location.mkdir(parents=True, exist_ok=True)
        return self.client.create_experiment(self.experiment, artifact_location=location.as_uri())

    @contextmanager
    def run(self, run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[Tracker]:
        """Start a run; it ends FINISHED, or FAILED when the block raises."""
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            experiment_id = self._experiment_id()
            active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {}))
        except MlflowException as error:
            raise TrackingError(
                f"cannot start an MLflow run in {self.tracking_uri} (experiment {self.experiment!r}): "
                f"{error.message}"
            ) from error
        self.run_id = active.info.run_id
        try:
            yield self
        except MlflowException as error:
            mlflow.end_run(status="FAILED")
            message = f"MLflow run {self.run_id} in {self.tracking_uri} failed: {error.message}"
            raise TrackingError(message) from error
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run(status="FINISHED")

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = {key: (str(value)[:5000]) for key, value in params.items()}
        items = list(flat.items())
        for start in range(0, len(items), 90):
            mlflow.log_params(dict(items[start : start + 90]))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {metric_key(key): float(value) for key, value in metrics.items()
                 if value is not None and value == value}
        if clean:
            mlflow.log_metrics(clean, step=step)

    def log_artifacts(self, directory: Path, artifact_path: str | None = None) -> None:
        mlflow.log_artifacts(str(directory), artifact_path=artifact_path)

    def log_dict(self, data: Mapping[str, Any], file_name: str) -> None:
        mlflow.log_dict(dict(data), file_name)

    def log_bundle(self, bundle_dir: Path) -> str:
        """Log the bundle directory as a pyfunc model of this run; returns its model URI."""
        # the wrapper class is importable from this package, so cloudpickle stores a reference, not code
        pyfunc_logger = logging.getLogger("mlflow.pyfunc")
        level = pyfunc_logger.level
        pyfunc_logger.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                # an input example would make MLflow load the bundle and predict once, just to validate it
                warnings.filterwarnings("ignore", message=".*input example was not provided")
                info = mlflow.pyfunc.log_model(
                    name=MODEL_ARTIFACT,
                    python_model=BundlePyfunc(),
                    artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                    pip_requirements=_requirements(),
                    signature=_signature(),
                )
        finally:
            pyfunc_logger.setLevel(level)
        return info.model_uri

    # ------------------------------------------------------------------ registry
    def champion(self, name: str, metric: str) -> Champion | None:
        """The registered model's current champion and its logged value of `metric`, if any."""
        # only "no such model / alias / run" means no champion: a store error must not promote anyone
        try:
            aliases = self.client.get_registered_model(name).aliases
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise TrackingError(f"cannot read registered model {name!r} from {self.tracking_uri}: "
                                f"{error.message}") from error
        if CHAMPION not in aliases:
            return None
        try:
            version = self.client.get_model_version(name, str(aliases[CHAMPION]))
        except MlflowException as error:
            raise TrackingError(f"cannot read the {CHAMPION} version of {name!r} from {self.tracking_uri}: "
                                f"{error.message}") from error
        value = None
        if version.run_id:
            try:
                value = self.client.get_run(version.run_id).data.metrics.get(metric_key(metric))
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise TrackingError(f"cannot read run {version.run_id} of {name!r} champion: "
                                        f"{error.message}") from error
        return Champion(version=str(version.version), run_id=version.run_id or "", value=value)

    def register(self, model_uri: str, name: str) -> str:
        """Register `model_uri` as a new version of `name`; returns the version number."""
        try:
            version = mlflow.register_model(model_uri, name, await_registration_for=0)
        except MlflowException as error:
            raise TrackingError(f"cannot register {model_uri} as {name!r}: {error.message}") from error
        return str(version.version)

    def set_champion(self, name: str, version: str) -> None:
        try:
            self.client.set_registered_model_alias(name, CHAMPION, version)
        except MlflowException as error:
            raise TrackingError(f"registered {name!r} version {version} but cannot point {CHAMPION!r} at it: "
                                f"{error.message}") from error


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "user_id"), ColSpec("string", "card_tier", required=False)]),
        outputs=Schema([ColSpec("string", "user_id"), ColSpec("long", "rank"),
                        ColSpec("string", "content_id"), ColSpec("double", "score")]),
        params=ParamSchema([ParamSpec("k", "long", 10), ParamSpec("as_of", "string", "")]),
    )


def _requirements() -> list[str]:
    from importlib import metadata

    names = ("qianmian", "lightfm-next", "implicit", "numpy", "scipy", "pandas", "pyarrow", "mlflow")
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


@contextmanager
def resolved_bundle(uri: str, tracking_uri: str) -> Iterator[Path]:
    """A local bundle directory for `uri`: `models:/NAME@alias`, `models:/NAME/VERSION`, `runs:/ID/model`,
    `models:/m-...` or a bundle path. Downloaded copies live in a temporary directory for the block."""
    path = Path(uri)
    if "://" not in uri and ":/" not in uri[:10]:
        if not path.exists():
            raise TrackingError(
                f"model {uri!r} is neither an existing bundle path nor a models:/ or runs:/ URI"
            )
        yield path
        return
    if not uri.startswith(("models:/", "runs:/", "file:")):
        raise TrackingError(f"model URI {uri!r} must start with models:/, runs:/ or be a bundle path")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    staging = Path(tempfile.mkdtemp(prefix="qianmian-model-"))
    try:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging)))
        except MlflowException as error:
            raise TrackingError(
                f"cannot resolve model URI {uri!r} in {tracking_uri}: {error.message}"
            ) from error
        candidates = [local / "artifacts" / BUNDLE_ARTIFACT, local / BUNDLE_ARTIFACT, local]
        for candidate in candidates:
            if (candidate / "bundle.json").is_file():
                yield candidate
                return
        raise TrackingError(f"model URI {uri!r} does not hold a Qianmian model bundle")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_pyfunc(uri: str, tracking_uri: str) -> PyFuncModel:
    """The logged model as an MLflow pyfunc (`predict(DataFrame with user_id[, card_tier])`)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        raise TrackingError(f"cannot load model {uri!r} from {tracking_uri}: {error.message}") from error

