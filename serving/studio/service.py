"""The studio's simulations, live vs draft, in a background process that keeps the configured world."""

from __future__ import annotations

import base64
import logging
import multiprocessing
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.caps.policy import Policy
from recsys.config import Settings

if TYPE_CHECKING:
    from recsys.bundle import ModelBundle
    from simulation.replay import SimWorld

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


def load_bundle(path: str) -> ModelBundle:
    """The model bundle the studio ranks with, from a bundle directory: `recsys serve` copies a
    models:/ or runs:/ URI to one before the API starts, so the API never opens the registry."""
    from recsys.bundle import ModelBundle

    if ":/" in path[:10]:
        raise StudioNotConfiguredError(
            f"RECSYS_STUDIO_MODEL_URI={path!r} is a registry URI: start the API with `recsys serve`, "
            "which copies that model to a local bundle first, or set a bundle directory"
        )
    return ModelBundle.load(path)


def world_info(settings: Settings) -> StudioWorldInfo:
    """Where the studio's world comes from; `StudioNotConfiguredError` when nothing is configured."""
    data_dir = settings.studio_data_dir or settings.data_dir
    if data_dir is None:
        raise StudioNotConfiguredError(
            "the studio has no world to simulate on: set RECSYS_STUDIO_DATA_DIR (or RECSYS_DATA_DIR) to "
            "a data directory, and RECSYS_STUDIO_TRUTH_PATH for a synthetic world's truth"
        )
    truth = settings.studio_truth_path
    if truth is None:
        sibling = Path(data_dir).parent / f"{Path(data_dir).name}.truth.npz"
        truth = sibling if sibling.is_file() else None
    sample = max(1, min(settings.studio_users, MAX_STUDIO_USERS))
    days = max(1, min(settings.studio_days, MAX_STUDIO_DAYS))
    return StudioWorldInfo(str(data_dir), str(truth) if truth else None, settings.studio_model_uri, sample,
                           days)


class StudioService:
    """Runs the studio's simulations one at a time in a background process of their own.

    A simulation is seconds of numpy and matplotlib: inside an API worker it would hold the GIL and
    slow every ranking request of that worker. The process is started on first use (a fresh
    interpreter, not a fork of the server), loads the world once and keeps it.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._running = threading.Lock()
        self._warming: Future[int] | None = None

    def info(self) -> StudioWorldInfo:
        return world_info(self.settings)

    def _simulator(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                spawn = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=spawn)
            return self._pool

    def warm(self) -> None:
        """Start loading the world in the simulator process (the page asks for it when it opens)."""
        if self._warming is None:
            self._warming = self._simulator().submit(_load_world, self.settings)
            self._warming.add_done_callback(_log_failure)

    def wait_for_world(self) -> int:
        """Load the world now if it is not loaded yet; returns its number of cardholders."""
        return self._simulator().submit(_load_world, self.settings).result()

    def compare(self, live: Policy, live_label: str, draft: Policy, days: int | None, users: int | None,
                seed: int, charts: bool = True) -> dict[str, Any]:
        """Simulate the live policy and the draft on the same sample and draws; report and PNG charts."""
        self.info()
        if not self._running.acquire(timeout=BUSY_WAIT_SECONDS):
            raise StudioBusyError("another simulation is still running: try again in a minute")
        try:
            job = self._simulator().submit(_compare, self.settings, live, live_label, draft, days, users,
                                           seed, charts)
            return job.result()
        finally:
            self._running.release()

    def close(self) -> None:
        """Stop the simulator process and wait for it to exit (after the simulation it may be running),
        so no simulator outlives the server."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None


def _log_failure(future: Future[int]) -> None:
    error = future.exception()
    if error is not None:
        logger.warning("studio world not loaded: %s", error)


# ---------------------------------------------------------------------- inside the simulator process
_WORLD: SimWorld | None = None


def _load_world(settings: Settings) -> int:
    global _WORLD
    if _WORLD is None:
        from simulation.replay import load_world

        info = world_info(settings)
        began = time.perf_counter()
        try:
            bundle = load_bundle(info.model_uri) if info.model_uri else None
            _WORLD = load_world(info.data_dir, truth_path=info.truth_path, bundle=bundle,
                                bundle_label=info.model_uri or "", max_users=info.sample, seed=0)
        except (ValueError, OSError) as error:  # contract, truth, bundle or simulation errors
            raise StudioNotConfiguredError(f"the studio world cannot be loaded: {error}") from error
        logger.info("studio world loaded in %.1fs: %d cardholders", time.perf_counter() - began,
                    _WORLD.n_users)
    return _WORLD.n_users


def _compare(settings: Settings, live: Policy, live_label: str, draft: Policy, days: int | None,
             users: int | None, seed: int, charts: bool) -> dict[str, Any]:
    from recsys.caps.words import rule_words_for
    from simulation.charts import chart_pngs
    from simulation.runner import ScheduleConfig, simulate

    _load_world(settings)
    began = time.perf_counter()
    world = _WORLD if users is None else _WORLD.sample(users, seed=0)
    config = ScheduleConfig(days=days or world_info(settings).days, seed=seed)
    report = simulate(world, [live, draft], config, labels=[live_label, "draft"])
    images = {name: "data:image/png;base64," + base64.b64encode(data).decode("ascii")
              for name, data in (chart_pngs(report).items() if charts else ())}
    seconds = time.perf_counter() - began
    logger.info("studio simulation of %d cardholders x %d days in %.1fs", world.n_users, config.days, seconds)
    rules = {rule for outcome in report.outcomes
             for rule in (*outcome.rules, *outcome.total.blocked_by_rule)}
    # the page shows plain words for the rule ids, with the id in a tooltip
    shaped = {**report.to_dict(), "rule_words": rule_words_for(sorted(rules), [live, draft])}
    return {"report": shaped, "charts": images, "seconds": seconds}
