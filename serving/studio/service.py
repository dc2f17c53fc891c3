"""The studio's simulations: the configured world (loaded once per process, sampled), live vs draft."""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.caps.policy import Policy
from recsys.config import Settings

if TYPE_CHECKING:
    from recsys.bundle import ModelBundle
    from recsys.simulation.world import SimWorld

logger = logging.getLogger(__name__)

MAX_STUDIO_USERS = 50_000
MAX_STUDIO_DAYS = 90
BUSY_WAIT_SECONDS = 60.0


class StudioNotConfiguredError(RuntimeError):
    """No world to simulate on: the data directory setting is missing or unusable."""


class StudioBusyError(RuntimeError):
    """Another simulation holds the process's simulator for too long."""


@dataclass(frozen=True)
class StudioWorldInfo:
    data_dir: str
    truth_path: str | None
    model_uri: str | None
    sample: int
    days: int


def load_bundle(uri: str, settings: Settings) -> ModelBundle:
    """The model bundle the studio ranks with (models:/, runs:/ URI or a bundle path)."""
    from recsys.bundle import ModelBundle
    from training.tracking import resolved_bundle

    with resolved_bundle(uri, settings.tracking_uri) as path:
        return ModelBundle.load(path)


class StudioService:
    """Loads the configured world on first use and runs one simulation at a time per process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._world: SimWorld | None = None
        self._loading = threading.Lock()
        self._running = threading.Lock()

    def info(self) -> StudioWorldInfo:
        data_dir = self.settings.studio_data_dir or self.settings.data_dir
        if data_dir is None:
            raise StudioNotConfiguredError(
                "the studio has no world to simulate on: set RECSYS_STUDIO_DATA_DIR (or RECSYS_DATA_DIR) to "
                "a data directory, and RECSYS_STUDIO_TRUTH_PATH for a synthetic world's truth"
            )
        truth = self.settings.studio_truth_path
        if truth is None:
            sibling = Path(data_dir).parent / f"{Path(data_dir).name}.truth.npz"
            truth = sibling if sibling.is_file() else None
        sample = max(1, min(self.settings.studio_users, MAX_STUDIO_USERS))
        days = max(1, min(self.settings.studio_days, MAX_STUDIO_DAYS))
        return StudioWorldInfo(str(data_dir), str(truth) if truth else None, self.settings.studio_model_uri,
                               sample, days)

    def warm(self) -> None:
        """Start loading the world in the background (the page asks for it when it opens)."""
        if self._world is None and not self._loading.locked():
            threading.Thread(target=self._warm, name="studio-world", daemon=True).start()

    def _warm(self) -> None:
        try:
            self.world()
        except StudioNotConfiguredError as error:
            logger.warning("%s", error)

    def world(self) -> SimWorld:
        """The configured world, sampled to `studio_users` cardholders (loaded once)."""
        with self._loading:
            if self._world is None:
                from recsys.simulation.world import load_world

                info = self.info()
                began = time.perf_counter()
                try:
                    bundle = load_bundle(info.model_uri, self.settings) if info.model_uri else None
                    self._world = load_world(info.data_dir, truth_path=info.truth_path, bundle=bundle,
                                             bundle_label=info.model_uri or "", max_users=info.sample, seed=0)
                except (ValueError, OSError) as error:  # contract, truth, bundle or simulation errors
                    raise StudioNotConfiguredError(f"the studio world cannot be loaded: {error}") from error
                logger.info("studio world loaded in %.1fs: %d cardholders", time.perf_counter() - began,
                            self._world.n_users)
            return self._world

    def compare(self, live: Policy, live_label: str, draft: Policy, days: int | None, users: int | None,
                seed: int, charts: bool = True) -> dict[str, Any]:
        """Simulate the live policy and the draft on the same sample and draws; report and PNG charts."""
        from recsys.caps.words import rule_words_for
        from recsys.simulation.charts import chart_pngs
        from recsys.simulation.runner import ScheduleConfig, simulate

        info = self.info()
        if not self._running.acquire(timeout=BUSY_WAIT_SECONDS):
            raise StudioBusyError("another simulation is still running: try again in a minute")
        try:
            began = time.perf_counter()
            world = self.world()
            if users is not None:
                world = world.sample(users, seed=0)
            config = ScheduleConfig(days=days or info.days, seed=seed)
            report = simulate(world, [live, draft], config, labels=[live_label, "draft"])
            images = {name: "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                      for name, data in (chart_pngs(report).items() if charts else ())}
            seconds = time.perf_counter() - began
        finally:
            self._running.release()
        logger.info("studio simulation of %d cardholders x %d days in %.1fs", world.n_users, config.days,
                    seconds)
        rules = {rule for outcome in report.outcomes
                 for rule in (*outcome.rules, *outcome.total.blocked_by_rule)}
        # the page shows plain words for the rule ids, with the id in a tooltip
        shaped = {**report.to_dict(), "rule_words": rule_words_for(sorted(rules), [live, draft])}
        return {"report": shaped, "charts": images, "seconds": seconds}
