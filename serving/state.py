"""Per-process serving state: Redis, the live publication, the policy, the caps engine.

The live publication and the policy are swapped in whole (one reference assignment) when the
live pointer or the policy revision in Redis changes. Each worker looks at both at most once per
`reload_interval_seconds` (one pipelined round trip) and on `POST /v1/admin/reload`; requests
already running finish on the objects they started with, and a replaced publication stays in
Redis until the next publish, so no request is dropped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from recsys import redis_client
from recsys.caps.policy import Policy, default_policy, load_policy
from recsys.config import Settings
from recsys.publication import PublicationError, PublicationStore
from recsys.redis_client import Client as RedisClient
from recsys.times import iso_utc
from serving.errors import ClockWindowError, NoLiveModelError
from serving.event_log import EventLog
from serving.metrics import Metrics
from serving.pipeline import LiveModel
from serving.policy_store import PolicyRevision, PolicyStore
from serving.records import RecordCache
from serving.scheduler_slots import SchedulerSlots
from serving.send_at_following import SendAtFollowing

logger = logging.getLogger(__name__)


def connect(url: str, timeout: float = 1.0, cluster: bool = False) -> RedisClient:
    """A Redis client with short timeouts: a stalled store must fail requests fast (fail closed)."""
    return redis_client.connect(url, cluster=cluster, socket_timeout=timeout,
                                socket_connect_timeout=timeout, health_check_interval=30)


def build_cap_engine(client: RedisClient, prefix: str, policy: Policy, event_ttl_seconds: int):
    from recsys.caps.redis_engine import RedisCapEngine

    return RedisCapEngine(client, policy, prefix=f"{prefix}:caps", event_ttl_seconds=event_ttl_seconds)


@dataclass(frozen=True)
class Snapshot:
    """What one request works with; never changes after it is built."""

    model: LiveModel | None
    policy: PolicyRevision


class ServingState:
    def __init__(self, settings: Settings, client: RedisClient | None = None):
        self.settings = settings
        self.client = client or connect(settings.redis_url, settings.redis_timeout_seconds,
                                        settings.redis_cluster)
        self.prefix = settings.redis_prefix
        self.publications = PublicationStore(self.client, self.prefix)
        self.policies = PolicyStore(self.client, self.prefix)
        self.scheduler_slots = SchedulerSlots(self.client, self.prefix)
        self.send_at_following = SendAtFollowing(self.client, self.prefix)
        self.metrics = Metrics()
        self.batches_running = 0  # `/v1/rank/batch` calls in progress in this app (changed on its event loop)
        self.event_log = EventLog(settings.event_log_path)
        self.engine = None
        self._model: LiveModel | None = None
        self._records: RecordCache | None = None
        self._policy: PolicyRevision | None = None
        self._next_check = 0.0
        self.last_error: str | None = None
        self._refused: str | None = None  # a live version that failed to load: not retried

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Bootstrap the policy and load the live publication; a Redis outage only makes it not ready."""
        try:
            self.refresh(force=True)
        except redis.RedisError as error:
            self.last_error = f"Redis unreachable at startup: {type(error).__name__}"
            logger.warning("%s; will retry on the next request", self.last_error)

    def close(self) -> None:
        if self._records is not None:
            self._records.stop(wait=5.0)
        self.event_log.close()
        if self.engine is not None:
            self.engine.close()
        self.client.close()

    def initial_policy(self) -> Policy:
        if self.settings.policy_path is not None:
            return load_policy(self.settings.policy_path)
        return default_policy()

    # ------------------------------------------------------------------ reload
    def refresh(self, force: bool = False) -> None:
        """Swap in a new publication or policy revision if Redis names one (at most once a second)."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        self._next_check = now + self.settings.reload_interval_seconds
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.publications.live_key)
        pipe.get(self.policies.current_key)
        live, revision = pipe.execute()
        live = live.decode() if live else None
        if self._policy is None or int(revision or 0) != self._policy.revision:
            self._swap_policy(self.policies.ensure(self.initial_policy()))
        if live != (self._model.version if self._model else None) and (live is None or live != self._refused):
            self._swap_model(live)

    def _swap_policy(self, revision: PolicyRevision) -> None:
        if self.engine is None:
            self.engine = build_cap_engine(self.client, self.prefix, revision.policy,
                                           self.settings.event_dedupe_ttl_seconds)
        else:
            self.engine.set_policy(revision.policy)
        self._policy = revision
        self.metrics.policy_revision.set(revision.revision)
        logger.info("policy revision %d (%s) applied", revision.revision, revision.policy.version)

    def _swap_model(self, version: str | None) -> None:
        previous = self._model.version if self._model else None
        if version is None:
            self._model = None
            self._swap_records(None)
            self.metrics.set_model_version(None, previous)
            return
        try:
            published = self.publications.load(version)
        except PublicationError as error:
            # Keep serving the version we have; readiness reports the problem.
            self.last_error = f"live version {version} refused: {error}"
            self._refused = version
            logger.error("cannot load publication %s: %s", version, error)
            return
        builder = None
        if published.builder_state is not None:
            from features.builder import FeatureBuilder

            builder = FeatureBuilder.from_dict(published.builder_state)
        try:
            self._model = LiveModel(published, builder)
        except PublicationError as error:
            self.last_error = f"live version {version} refused: {error}"
            self._refused = version
            logger.error("cannot load publication %s: %s", version, error)
            return
        self._swap_records(version)
        self.last_error = None
        self._refused = None
        self.metrics.set_model_version(version, previous)
        logger.info("serving publication %s (previous %s)", version, previous)

    def _swap_records(self, version: str | None) -> None:
        if self._records is not None:
            self._records.stop()
        self._records = None
        if version is not None:
            limit = self.settings.record_cache_size
            self._records = RecordCache(self.client, self.publications, version, limit)
            self._records.start()

    # ------------------------------------------------------------------ per request
    def now(self) -> datetime:
        """The server clock (`settings.server_time` when fixed, for tests and replays)."""
        return self.settings.server_time or datetime.now(UTC)

    def check_now(self, moment: datetime | None, where: str, past_bound: bool = True) -> datetime:
        """`moment` (default: the server clock), refused when outside the window around the server
        clock (`RECSYS_CLOCK_PAST_SECONDS` before unless `past_bound` is false,
        `RECSYS_CLOCK_FUTURE_SECONDS` after)."""
        server = self.now()
        if moment is None:
            return server
        past, future = self.settings.clock_past_seconds, self.settings.clock_future_seconds
        too_old = past_bound and moment < server - timedelta(seconds=past)
        if too_old or moment > server + timedelta(seconds=future):
            raise ClockWindowError(
                f"{where} {moment.isoformat()} is outside {past}s before to {future}s after the server clock "
                f"({iso_utc(server.replace(microsecond=0))}): send the current time"
            )
        return moment

    def snapshot(self, need_model: bool = True) -> Snapshot:
        self.refresh()
        if self._policy is None:
            self.refresh(force=True)
        if need_model and self._model is None:
            raise NoLiveModelError(
                "no model version is live: run `recsys publish --model URI --data DIR` first"
                + (f" ({self.last_error})" if self.last_error else "")
            )
        return Snapshot(self._model, self._policy)

    @property
    def model(self) -> LiveModel | None:
        return self._model

    @property
    def policy(self) -> PolicyRevision | None:
        return self._policy

    def user_records(self, version: str, user_ids: list[str]) -> list[bytes | None]:
        """Published records of `version` (None: cardholder not published), from memory where held."""
        records = self._records
        if records is not None and records.version == version:
            return records.get_many(user_ids)
        return redis_client.get_many(self.client, [self.user_key(version, user_id) for user_id in user_ids])

    @property
    def records(self) -> RecordCache | None:
        return self._records

    def user_key(self, version: str, user_id: str) -> str:
        return self.publications.user_key(version, user_id)
