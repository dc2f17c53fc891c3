"""The hand-made push log and a small synthetic world, each fitted once per session."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from features.loader import Dataset, load_dataset
from recsys.response_model import PushResponseModel
from tests.response.handmade import AS_OF, make_tables, write_tables
from training.response import ResponseFitConfig, ResponseFitReport, fit_response_models
from worlds import WorldConfig, WorldTruth, generate_world


@dataclass(frozen=True)
class Fitted:
    dataset: Dataset
    model: PushResponseModel
    report: ResponseFitReport


@dataclass(frozen=True)
class SynthFitted(Fitted):
    truth: WorldTruth


@pytest.fixture(scope="session")
def handmade_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return load_dataset(write_tables(tmp_path_factory.mktemp("handmade") / "data", make_tables()))


@pytest.fixture(scope="session")
def handmade(handmade_dataset: Dataset) -> Fitted:
    model, report = fit_response_models(handmade_dataset, AS_OF)
    return Fitted(handmade_dataset, model, report)


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, WorldTruth]:
    """2,000 cardholders, 60 items, 90 days, seed 3."""
    summary = generate_world(WorldConfig(users=2_000, items=60, days=90, seed=3),
                             tmp_path_factory.mktemp("response-world") / "data")
    return load_dataset(summary.out), WorldTruth.load(summary.truth)


@pytest.fixture(scope="session")
def synth(synth_world: tuple[Dataset, WorldTruth]) -> SynthFitted:
    dataset, truth = synth_world
    model, report = fit_response_models(dataset, pd.Timestamp(truth.as_of), ResponseFitConfig(refit=False))
    return SynthFitted(dataset, model, report, truth)
