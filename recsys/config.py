"""Process settings, read from `RECSYS_`-prefixed environment variables (or a `.env` file)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({
    "", "changeme", "change-me", "change_me", "secret", "password", "token", "admin", "scheduler",
    "dev-scheduler", "dev-admin", "demo-scheduler-token", "demo-admin-token", "test", "example",
})
MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    home: Path = Path("var")
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "qm"
    # Socket connect/read timeout of every API Redis call: a stalled Redis fails requests this fast.
    redis_timeout_seconds: float = Field(1.0, gt=0, le=30)
    # redis_url names a node of a Redis Cluster (said, not asked: the API starts while Redis is down).
    redis_cluster: bool = False
    mlflow_tracking_uri: str | None = None
    registered_model_name: str = "qianmian-push-ranker"
    default_timezone: str = "Asia/Shanghai"
    policy_path: Path | None = None
    model_uri: str | None = None
    scheduler_token: SecretStr = SecretStr("dev-scheduler")
    admin_token: SecretStr = SecretStr("dev-admin")
    # Named administrators, {"alice": "<token>", ...}: the audit trail records the name.
    admin_tokens: dict[str, SecretStr] = {}
    push_log_path: Path | None = None
    # Ranking API and publishing (serving/, publishing/publish.py).
    data_dir: Path | None = None
    event_dedupe_ttl_seconds: int = 30 * 86400
    reload_interval_seconds: float = 1.0
    # Live cardholder records each API worker holds in memory (about 0.7 KB each); 0: read every
    # record from Redis per request (serving/records.py).
    record_cache_size: int = 250_000
    # Caps studio (serving/studio/): the world `POST /v1/studio/simulate` replays.
    studio_data_dir: Path | None = None  # default: data_dir
    studio_truth_path: Path | None = None  # default: <data dir>.truth.npz beside it, when it exists
    studio_model_uri: str | None = None  # default: per-card-tier popularity ranking
    studio_users: int = 5000  # cardholders sampled, so a simulation answers in seconds
    studio_days: int = 30
    log_level: str = "INFO"
    # A fixed server clock (tests, replays of a past day); refused in production.
    server_time: datetime | None = None
    # How far a request's `now` or an event's `ts` may lie from the server clock.
    clock_past_seconds: int = Field(7 * 86400, ge=0, le=366 * 86400)
    clock_future_seconds: int = Field(300, ge=0, le=86400)
    # Largest request body the API reads (a full 1,000-cardholder rank batch is about 2 MB).
    max_request_bytes: int = Field(16 * 2**20, ge=1024)
    # Offline jobs on Dask (recsys/cluster.py): a scheduler address, e.g. tcp://10.0.0.5:8786;
    # unset: a LocalCluster started for the job, one single-threaded worker per core.
    dask_scheduler: str | None = None
    dask_partition_size: int = Field(150_000, ge=1)  # cardholders per partition (bucket)
    dask_worker_memory: str = "4GiB"  # memory limit per LocalCluster worker (Dask spills, then pauses)
    dask_workers: int | None = Field(None, ge=1)  # LocalCluster workers; unset: one per core
    # `recsys train` on more cardholders than this fits a seeded sample of this many (training/job.py);
    # measured about 0.9 GB + 35 KB per sampled cardholder: 50,000 stays well under 4 GB per process
    train_sample_users: int = Field(50_000, ge=1)

    def tokens(self) -> dict[str, str]:
        """Every bearer token by the setting that holds it."""
        found = {"RECSYS_SCHEDULER_TOKEN": self.scheduler_token.get_secret_value(),
                 "RECSYS_ADMIN_TOKEN": self.admin_token.get_secret_value()}
        found.update({f"RECSYS_ADMIN_TOKENS[{name}]": token.get_secret_value()
                      for name, token in self.admin_tokens.items()})
        return found

    @model_validator(mode="after")
    def _refuse_weak_or_shared_secrets(self) -> Settings:
        tokens = self.tokens()
        owners: dict[str, str] = {}
        for name, token in tokens.items():
            if token in owners:
                # One token for two identities: the scheduler would pass admin checks.
                raise ValueError(f"{name} is the same token as {owners[token]}: give each its own token")
            owners[token] = name
        if self.environment != "production":
            return self
        if self.server_time is not None:
            raise ValueError("RECSYS_SERVER_TIME fixes the server clock: unset it in production")
        for name, token in tokens.items():
            lowered = token.strip().lower()
            if lowered in PLACEHOLDER_SECRETS or "changeme" in lowered.replace("-", "").replace("_", ""):
                raise ValueError(
                    f"{name} is unset or a placeholder: "
                    "set a real secret before running with RECSYS_ENVIRONMENT=production"
                )
            if len(token) < MIN_TOKEN_LENGTH or len(set(token)) < 8:
                raise ValueError(
                    f"{name} is too weak ({len(token)} characters): use at least {MIN_TOKEN_LENGTH} random "
                    "characters in production, e.g. from "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        return self

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI; a SQLite store under `home` unless one is configured."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return (self.home / "mlartifacts").resolve()

    @property
    def event_log_path(self) -> Path:
        return self.push_log_path or self.home / "events" / "push_log.jsonl"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
