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
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
# MLflow's UI opens an experiment of this kind on its training runs rather than on GenAI traces
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"


class TrackingError(ValueError):
    """A model URI that cannot be resolved, or a tracking store that cannot be used."""


def require_store(tracking_uri: str) -> None:
    """Refuse a local SQLite store that does not exist yet, instead of letting MLflow create an empty one.

    Only `recsys train` creates the store; reading from a missing one is a wrong RECSYS_HOME.
    """
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise TrackingError(
                f"no MLflow store at {path}: set RECSYS_HOME (or RECSYS_MLFLOW_TRACKING_URI) to where "
                "`recsys train` logged its runs, or train a model first"
            )


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

        from features.bundle_inputs import user_factors_for
        from recsys.bundle import build_eligibility, recommendation_rows
        from recsys.cells import UNKNOWN
        from recsys.ranking import top_k
        from recsys.times import utc_timestamp

        params = params or {}
        k = int(params.get("k", 10))
        as_of = utc_timestamp(params.get("as_of") or self.bundle.as_of)
        ids = model_input["user_id"].astype(str).to_numpy(dtype=object)
        factors = user_factors_for(self.bundle, ids)
        tiers = (model_input["card_tier"].astype("string").fillna(UNKNOWN).to_numpy(dtype=object)
                 if "card_tier" in model_input else np.full(len(ids), UNKNOWN, dtype=object))
        eligibility = build_eligibility(self.bundle.item_meta, self.bundle.items, as_of, tiers,
                                        sp.csr_matrix((len(ids), len(self.bundle.items)), dtype=bool))
        indices, scores = top_k(factors, self.bundle.model.item_factors(), k, eligibility)
        return recommendation_rows(ids, indices, scores, self.bundle.items)


def model_description(name: str) -> str:
    """The registered model's description: what a version is and what `champion` means."""
    return (
        "Qianmian push ranker: each version is a LightFM hybrid model bundle logged by `recsys train` "
        "(its run holds the holdout metrics, the report and the bundle). The `champion` alias is the "
        f"version the ranking API publishes (`recsys publish --model models:/{name}@champion`). "
        "`recsys train` moves it when a new version passes the champion gate on the holdout metric; "
        "`recsys models promote VERSION --reason ...` moves it by hand, recording who, when, why and "
        "the metrics at the time in the version's `champion.*` tags and the audit file under RECSYS_HOME."
    )


def run_name(experiment: str, data_dir: Path, as_of: datetime, started: datetime) -> str:
    """A run name that tells runs apart: experiment, data directory, as-of time and when the run started."""
    return (f"{experiment} | {Path(data_dir).name} | as-of {as_of:%Y-%m-%d %H:%M} | "
            f"at {started.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")


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
            if found.tags.get(EXPERIMENT_KIND_TAG) is None:
                self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
            return found.experiment_id
        location = (self.artifact_root / self.experiment).resolve()
        location.mkdir(parents=True, exist_ok=True)
        return self.client.create_experiment(self.experiment, artifact_location=location.as_uri(),
                                             tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT})

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

    def log_child_run(self, run_name: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> str:
        """A finished run nested under the active one (e.g. one tuning trial); returns its id."""
        with mlflow.start_run(run_name=run_name, nested=True, experiment_id=self._experiment_id()) as child:
            self.log_params(params)
            self.log_metrics(metrics)
        return child.info.run_id

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
        """Register `model_uri` as a new version of `name`; returns the version number.

        The registered model's description (what MLflow's Models page shows) says what the versions
        and the `champion` alias are; it is set on every registration, so older stores get it too.
        """
        try:
            version = mlflow.register_model(model_uri, name, await_registration_for=0)
            self.client.update_registered_model(name, description=model_description(name))
        except MlflowException as error:
            raise TrackingError(f"cannot register {model_uri} as {name!r}: {error.message}") from error
        return str(version.version)

    def set_champion(self, name: str, version: str) -> None:
        try:
            self.client.set_registered_model_alias(name, CHAMPION, version)
        except MlflowException as error:
            raise TrackingError(f"registered {name!r} version {version} but cannot point {CHAMPION!r} at it: "
                                f"{error.message}") from error


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version as the models commands show it (no MLflow types leave this module)."""

    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    run_name: str
    created: datetime
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


class Registry:
    """The registered versions of one store: read them, move an alias, tag a version."""

    def __init__(self, tracking_uri: str) -> None:
        require_store(tracking_uri)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version of a registered model; refuses a name the store does not hold."""
        try:
            aliases = self.client.get_registered_model(name).aliases
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                known = sorted(model.name for model in self.client.search_registered_models())
                raise TrackingError(
                    f"no registered model {name!r} in {self.tracking_uri} (registered: "
                    f"{', '.join(known) or 'none'}): set RECSYS_REGISTERED_MODEL_NAME or pass --name"
                ) from error
            raise TrackingError(f"cannot read registered model {name!r}: {error.message}") from error
        return {alias: str(version) for alias, version in aliases.items()}

    def versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of `name`, newest first, with its run's metrics and parameters."""
        aliases = self.aliases(name)
        try:
            found = self.client.search_model_versions(f"name = '{name}'")
        except MlflowException as error:
            raise TrackingError(f"cannot list the versions of {name!r}: {error.message}") from error
        infos = [self._info(version, aliases) for version in found]
        return sorted(infos, key=lambda info: int(info.version), reverse=True)

    def version(self, name: str, version: str) -> ModelVersionInfo:
        aliases = self.aliases(name)
        if not str(version).isdigit():
            raise TrackingError(f"model version {version!r} is not a version number (e.g. 3)")
        try:
            found = self.client.get_model_version(name, str(version))
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                numbers = sorted(int(item.version)
                                 for item in self.client.search_model_versions(f"name = '{name}'"))
                raise TrackingError(
                    f"{name!r} has no version {version} (versions: {', '.join(map(str, numbers)) or 'none'})"
                ) from error
            raise TrackingError(f"cannot read {name!r} version {version}: {error.message}") from error
        return self._info(found, aliases)

    def _info(self, version: Any, aliases: dict[str, str]) -> ModelVersionInfo:
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        run_name = ""
        if version.run_id:
            try:
                run = self.client.get_run(version.run_id)
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise TrackingError(f"cannot read run {version.run_id}: {error.message}") from error
            else:
                metrics, params = dict(run.data.metrics), dict(run.data.params)
                run_name = run.info.run_name or ""
        number = str(version.version)
        return ModelVersionInfo(
            name=version.name, version=number,
            aliases=tuple(sorted(alias for alias, pointed in aliases.items() if pointed == number)),
            run_id=version.run_id or "", run_name=run_name,
            created=datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC),
            source=version.source or "", tags=dict(version.tags or {}), metrics=metrics, params=params,
        )

    def set_alias(self, name: str, alias: str, version: str) -> None:
        try:
            self.client.set_registered_model_alias(name, alias, str(version))
        except MlflowException as error:
            raise TrackingError(f"cannot point {alias!r} of {name!r} at version {version}: "
                                f"{error.message}") from error

    def delete_alias(self, name: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as error:
            raise TrackingError(f"cannot remove {alias!r} from {name!r}: {error.message}") from error

    def tag_version(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        try:
            for key, value in tags.items():
                self.client.set_model_version_tag(name, str(version), key, str(value))
        except MlflowException as error:
            raise TrackingError(f"cannot tag {name!r} version {version}: {error.message}") from error


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


def registry_source(uri: str, tracking_uri: str) -> tuple[str, str] | None:
    """The registered model name and version number behind `models:/NAME@alias` (the alias resolved
    now) or `models:/NAME/VERSION`; None for any other model URI or path."""
    if not uri.startswith("models:/"):
        return None
    path = uri.removeprefix("models:/").rstrip("/")
    if "@" in path:
        name, alias = path.rsplit("@", 1)
        version = Registry(tracking_uri).aliases(name).get(alias)
        if version is None:
            raise TrackingError(f"registered model {name!r} has no alias {alias!r} in {tracking_uri}")
        return name, version
    name, _, version = path.rpartition("/")
    return (name, version) if name and version.isdigit() else None


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
    if not uri.startswith("file:"):
        require_store(tracking_uri)
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
    if uri.startswith(("models:/", "runs:/")):
        require_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        raise TrackingError(f"cannot load model {uri!r} from {tracking_uri}: {error.message}") from error

