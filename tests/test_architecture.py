"""The package boundaries the layout promises: data flows one way, and MLflow stays in one module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys", "features", "training", "serving", "qianmian", "worlds", "simulation", "publishing")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def importers_of(top_level: str, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for package in packages:
        for path in python_files(package):
            hits = {name for name in imported_modules(path) if name.split(".")[0] == top_level}
            if hits:
                found[str(path.relative_to(ROOT))] = hits
    return found


def test_every_package_exists() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").is_file(), package


ABOVE_FEATURES = ("serving", "training", "worlds", "simulation", "publishing")


@pytest.mark.parametrize("forbidden", ["features", *ABOVE_FEATURES])
def test_core_imports_nothing_built_above_it(forbidden: str) -> None:
    assert importers_of(forbidden, ("recsys",)) == {}


@pytest.mark.parametrize("forbidden", ABOVE_FEATURES)
def test_features_import_only_the_core(forbidden: str) -> None:
    assert importers_of(forbidden, ("features",)) == {}


def test_only_the_command_line_imports_training() -> None:
    outside = {path for path in importers_of("training") if not path.startswith(("training/", "qianmian/"))}
    assert outside == set()


def test_only_the_tracking_module_imports_mlflow() -> None:
    assert set(importers_of("mlflow")) <= {"training/tracking.py"}


def test_only_serving_raises_http_errors() -> None:
    web = set(importers_of("fastapi")) | set(importers_of("starlette"))
    assert {path for path in web if not path.startswith("serving/")} == set()
