"""docker-compose.yml is valid for the Compose CLI (no engine needed for `config`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"RECSYS_SCHEDULER_TOKEN": "s3cret-scheduler", "RECSYS_ADMIN_TOKEN": "s3cret-admin",
           "POSTGRES_PASSWORD": "s3cret-pg"}


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) or `docker-compose` (Debian package); fail, never skip, without."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed: run scripts/system_deps.sh "
                "(Debian: apt-get install docker-compose)")


def run_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key not in SECRETS}
    return subprocess.run([*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
                          cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid_with_health_checks() -> None:
    result = run_config(SECRETS)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"redis", "postgres", "mlflow", "train", "api", "dask-scheduler", "dask-worker-1",
                             "dask-worker-2"}
    for name in ("dask-worker-1", "dask-worker-2"):
        assert "tcp://dask-scheduler:8786" in services[name]["command"]
        assert services[name]["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"
    for name in ("redis", "postgres", "mlflow", "api"):
        assert services[name]["healthcheck"]["test"], name
    assert services["train"]["restart"] == "no"
    assert services["api"]["depends_on"]["train"]["condition"] == "service_completed_successfully"
    assert "postgresql://" in " ".join(services["mlflow"]["command"])
    assert any("mlflow-artifacts" in str(volume) for volume in services["mlflow"]["volumes"])
    assert services["api"]["environment"]["RECSYS_ENVIRONMENT"] == "production"


def test_compose_refuses_to_start_without_secrets() -> None:
    result = run_config({})
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "RECSYS_" in result.stderr
