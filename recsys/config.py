"""Process settings, read from `RECSYS_`-prefixed environment variables (or a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev-scheduler", "dev-admin"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    home: Path = Path("var")
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "qm"
    mlflow_tracking_uri: str | None = None
    registered_model_name: str = "qianmian-push-ranker"
    default_timezone: str = "Asia/Shanghai"
    policy_path: Path | None = None
    model_uri: str | None = None
    scheduler_token: SecretStr = SecretStr("dev-scheduler")
    admin_token: SecretStr = SecretStr("dev-admin")
    push_log_path: Path | None = None
    # Ranking API and publishing (serving/, recsys/publish.py).
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

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "production":
            for name in ("scheduler_token", "admin_token"):
                if getattr(self, name).get_secret_value() in PLACEHOLDER_SECRETS:
                    raise ValueError(
                        f"RECSYS_{name.upper()} is unset or a placeholder: "
                        "set a real secret before running with RECSYS_ENVIRONMENT=production"
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
