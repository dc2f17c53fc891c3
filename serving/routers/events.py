"""`POST /v1/events`: what happened to pushes; idempotent per `event_id`; feeds caps and the log.

Order per batch: claim each event id with SET NX (one pipelined round trip; repeats are reported
as duplicates), append the new events to the durable log (one fsync), then apply them to the caps
engine. If the store fails part-way, the claims of the events not applied are released, so the
scheduler's retry applies them; the log may then hold a line twice, which the export deduplicates
by event id.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from fastapi import APIRouter

from recsys.caps.decisions import CapStoreUnavailable
from serving.auth import EventsAccess
from serving.deps import State
from serving.schemas import Event, EventBatch, EventBatchResponse

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["events"])


def apply(state, event: Event, now: datetime) -> str:
    engine = state.engine
    if event.type == "sent":
        return f"reservation {engine.confirm(event.user_id, event.push_id, now=now).value}"
    if event.type == "failed":
        return f"reservation {engine.release(event.user_id, event.push_id, now=now).value}"
    if event.type in ("opened", "clicked"):
        engine.record_open(event.user_id, now=now)
        return "fatigue streak reset"
    if event.type == "muted":
        engine.record_mute(event.user_id, now=now)
        return "marketing paused per the mute rule"
    if event.type == "unmuted":
        engine.record_unmute(event.user_id, now=now)
        return "mute lifted: marketing pushes resume"
    if event.type == "subscribed":
        engine.record_opt_in(event.user_id, now=now)
        return "opted in to marketing pushes again"
    engine.record_opt_out(event.user_id, now=now)
    return "opted out of marketing pushes"


def content_of(state, event: Event) -> str | None:
    """The reserved content of a push, for `sent` events that do not name it."""
    try:
        record = state.engine.load_record(event.user_id).pushes.get(event.push_id)
    except (KeyError, AttributeError):
        return None
    return getattr(record, "content_id", None)


@router.post("/events", response_model=EventBatchResponse, summary="Report sent/failed/opened/... events",
             responses={503: {"description": "Caps store unavailable: retry the batch"}})
async def post_events(body: EventBatch, state: State, principal: EventsAccess) -> dict:
    state.snapshot(need_model=False)
    received = datetime.now(UTC)
    ttl = state.settings.event_dedupe_ttl_seconds
    keys = [f"{state.dedupe_prefix}{event.event_id}" for event in body.events]
    pipe = state.client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, received.isoformat(), nx=True, ex=ttl)
    claimed = pipe.execute()
    fresh, first_seen = [], set()
    for event, key, new in zip(body.events, keys, claimed, strict=True):
        # The same id twice inside one batch: the second is a duplicate too.
        if new and event.event_id not in first_seen:
            first_seen.add(event.event_id)
            fresh.append((event, key))
    try:
        records = []
        for event, _ in fresh:
            content_id = event.content_id
            if event.type == "sent" and content_id is None:
                content_id = content_of(state, event)
            records.append({
                "event_id": event.event_id, "type": event.type, "user_id": event.user_id,
                "push_id": event.push_id, "content_id": content_id,
                "ts": (event.ts or received).astimezone(UTC).isoformat(), "received_at": received.isoformat(),
            })
        state.event_log.append(records)
    except BaseException:
        if fresh:
            state.client.delete(*[key for _, key in fresh])
        raise
    details: dict[str, str] = {}
    for position, (event, _key) in enumerate(fresh):
        try:
            details[event.event_id] = apply(state, event, event.ts or received)
        except (CapStoreUnavailable, redis.RedisError):
            unapplied = [key for _, key in fresh[position:]]
            try:
                state.client.delete(*unapplied)
            except redis.RedisError:
                logger.warning("could not release %d event claims; they expire after %ds",
                               len(unapplied), ttl)
            raise
        state.metrics.events.labels(event.type, "applied").inc()
    results = []
    for event in body.events:
        detail = details.pop(event.event_id, None)
        if detail is None:
            state.metrics.events.labels(event.type, "duplicate").inc()
            results.append({"event_id": event.event_id, "status": "duplicate",
                            "detail": "event id already received: ignored"})
        else:
            results.append({"event_id": event.event_id, "status": "applied", "detail": detail})
    return {"results": results}
