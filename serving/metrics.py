"""Prometheus metrics of one app: requests, latency, caps decisions by rule, live model version.

With several uvicorn workers, `recsys serve` points `PROMETHEUS_MULTIPROC_DIR` at a fresh
directory before the workers start; every worker then writes its samples there and `/metrics`
(answered by any worker) aggregates all of them. With one worker the metrics are the process's own.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The app's collectors, in a registry of their own (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "qianmian_http_requests_total", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "qianmian_http_request_duration_seconds", "HTTP request latency by route template.",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.caps_decisions = Counter(
            "qianmian_caps_decisions_total",
            "Caps decisions over ranked candidates: `allowed`, or the first rule that blocked.",
            ["rule"], registry=self.registry,
        )
        self.fallbacks = Counter(
            "qianmian_rank_fallback_total", "Rank answers for cardholders the published model does not know.",
            ["source"], registry=self.registry,
        )
        self.batches = Counter(
            "qianmian_rank_batches_total",
            "`/v1/rank/batch` calls by whether this worker was already ranking another batch when the call "
            "began (`beside`): batches sharing a worker wait for each other while another worker may idle.",
            ["beside"], registry=self.registry,
        )
        self.events = Counter(
            "qianmian_events_total",
            "Posted scheduler events by type and outcome: applied, recorded, unchanged or duplicate.",
            ["type", "outcome"], registry=self.registry,
        )
        self.model_version = Gauge(
            "qianmian_model_version_info", "The publication this worker serves (value 1).",
            ["version"], registry=self.registry, multiprocess_mode="livemax",
        )
        self.policy_revision = Gauge(
            "qianmian_policy_revision", "The policy revision this worker applies.",
            registry=self.registry, multiprocess_mode="livemax",
        )

    def set_model_version(self, version: str | None, previous: str | None) -> None:
        if previous is not None and previous != version:
            self.model_version.labels(previous).set(0)
        if version is not None:
            self.model_version.labels(version).set(1)

    def exposition(self) -> tuple[bytes, str]:
        path = multiprocess_dir()
        if path:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=path)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        # Labelled children, looked up once per (route, method, status) instead of per request.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[str, Any] = {}

    def _record(self, template: str, method: str, status: int, seconds: float) -> None:
        counter = self._counters.get((template, method, status))
        if counter is None:
            counter = self.metrics.requests.labels(template, method, str(status))
            if len(self._counters) < 4096:
                self._counters[(template, method, status)] = counter
        counter.inc()
        timer = self._timers.get(template)
        if timer is None:
            timer = self.metrics.latency.labels(template)
            if len(self._timers) < 1024:
                self._timers[template] = timer
        timer.observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self._record(template, scope["method"], status, time.perf_counter() - started)
