"""`POST /v1/events`: what happened to pushes, applied to the caps exactly once and logged durably.

Order per batch: look up which event ids are already applied (one pipelined round trip), append
the others to the durable log (one fsync), then apply each event to the
caps engine with its event id. Applying an event and noting its id as applied are one Lua script
call on the cardholder's key (`recsys/caps/lua/caps.lua`), so "duplicate" means exactly "this
cardholder's state already reflects this event", which is only ever written after the event was
logged. Event ids are unique per cardholder. Where a failure or crash can land:

- before or during the log append (disk full, process killed): nothing was applied; the retry
  logs and applies the whole batch.
- after the append, before or between applies (Redis stalled or down, process killed): the events
  applied so far carry their marker, the rest do not; the retry reports the first as duplicates
  and applies the others. The log then holds some lines twice; the export counts an event id once.
- a reply lost after Redis ran the script (timeout, connection reset): the script either ran
  whole or not at all; the retry sees the marker or applies it.

Each `sent` applied for a push answered with a later `send_at` also teaches whether the scheduler
sends at `send_at` (`serving.send_at_following`), after the batch is applied.

A `sent` whose reservation is gone (its TTL passed, or it was purged) still counts, as a send at
the event's time (status `recorded`: the store cannot tell an expired reservation from a push id it
never issued, as it keeps neither). An event that changed nothing answers `unchanged`: an
`opened` / `clicked` of a push the cardholder's state does not know leaves the fatigue streak as it
is. The route is a plain `def`: FastAPI runs it in its thread pool, so Redis round trips (bounded
by the client's socket timeout) never block the event loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter

from recsys.caps.decisions import Candidate, EventAlreadyApplied, PushStatus
from serving.auth import EventsAccess
from serving.deps import State
from serving.schemas import Event, EventBatch, EventBatchResponse
from serving.send_at_following import suggested_send_at

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["events"])


NOT_PENDING = ("no pending reservation under this push id: never issued by /v1/rank, or its reservation "
               "expired or was purged (the caps store keeps neither, so it cannot tell which)")

# What confirming (`sent`) or releasing (`failed`) a push answers: status and detail.
SETTLED: dict[tuple[str, PushStatus], tuple[str, str]] = {
    ("sent", PushStatus.CONFIRMED): ("applied", "reservation confirmed"),
    ("sent", PushStatus.RECORDED): ("recorded", f"{NOT_PENDING}; counted as a send at the event's ts"),
    ("sent", PushStatus.ALREADY_CONFIRMED): ("unchanged", "push already confirmed as sent: nothing changed"),
    ("sent", PushStatus.ALREADY_RELEASED): (
        "unchanged", "push already reported failed and its slot given back: nothing changed"),
    ("sent", PushStatus.NOT_FOUND): ("unchanged", f"{NOT_PENDING}: nothing changed"),
    ("failed", PushStatus.RELEASED): ("applied", "reservation released: the slot no longer counts"),
    ("failed", PushStatus.ALREADY_CONFIRMED): (
        "unchanged", "push already confirmed as sent: a failure after the send gives no slot back"),
    ("failed", PushStatus.ALREADY_RELEASED): ("unchanged", "reservation already released: nothing changed"),
    ("failed", PushStatus.NOT_FOUND): ("unchanged", f"{NOT_PENDING}: nothing to release"),
}


def apply(state, event: Event, now: datetime) -> tuple[str, str]:
    """Apply one event to the caps (once per event id); its status and detail.

    `applied`: the cardholder's caps state changed; `recorded`: a `sent` with no pending
    reservation, counted at its ts; `unchanged`: a valid event that changed nothing."""
    engine = state.engine
    once = event.event_id
    if event.type == "sent":
        status = engine.confirm(event.user_id, event.push_id, now=now, event_id=once,
                                sent=sent_candidate(state, event))
        return SETTLED[("sent", status)]
    if event.type == "failed":
        return SETTLED[("failed", engine.release(event.user_id, event.push_id, now=now, event_id=once))]
    if event.type in ("opened", "clicked"):
        if engine.record_open(event.user_id, now=now, push_id=event.push_id, event_id=once):
            return "applied", "fatigue streak reset"
        return "unchanged", "push id unknown for this cardholder: fatigue streak unchanged"
    if event.type == "muted":
        engine.record_mute(event.user_id, now=now, event_id=once)
        return "applied", "marketing paused per the mute rule"
    if event.type == "unmuted":
        engine.record_unmute(event.user_id, now=now, event_id=once)
        return "applied", "mute lifted: marketing pushes resume"
    if event.type == "subscribed":
        engine.record_opt_in(event.user_id, now=now, event_id=once)
        return "applied", "opted in to marketing pushes again"
    engine.record_opt_out(event.user_id, now=now, event_id=once)
    return "applied", "opted out of marketing pushes"


def content_of(state, event: Event) -> str | None:
    """The reserved content of a push, for `sent` events that do not name it."""
    try:
        record = state.engine.load_record(event.user_id).pushes.get(event.push_id)
    except (KeyError, AttributeError):
        return None
    return getattr(record, "content_id", None)


def sent_candidate(state, event: Event) -> Candidate:
    """What a `sent` push was, for counting it when its reservation is gone: the live publication's
    description of its content, else a marketing article (it counts toward every general limit)."""
    content_id = event.content_id or "unknown"
    model = state.model
    position = model.item_position.get(content_id) if model is not None else None
    if position is None:
        return Candidate(content_id)
    return Candidate(content_id, model.kinds[position], tuple(model.tags[position]),
                     bool(model.transactional[position]))


@router.post("/events", response_model=EventBatchResponse, summary="Report sent/failed/opened/... events",
             responses={503: {"description": "Caps store or event log unavailable: retry the batch"}})
def post_events(body: EventBatch, state: State, principal: EventsAccess) -> dict:
    snapshot = state.snapshot(need_model=False)
    received = state.now()
    for index, event in enumerate(body.events):
        # A late event still counts (a past time can only make the caps stricter); a future one could
        # block a cardholder until then.
        state.check_now(event.ts, f"events[{index}].ts", past_bound=False)
    events = [
        event.model_copy(update={"content_id": content_of(state, event)})
        if event.type == "sent" and event.content_id is None else event
        for event in body.events
    ]
    # Events already applied were logged before; the others are logged (again, after a crash
    # between log and apply) before any is applied.
    pairs = [(event.user_id, event.event_id) for event in events]
    done = {pair for pair, applied in zip(pairs, state.engine.applied(pairs), strict=True) if applied}
    new: dict[tuple[str, str], Event] = {}
    for pair, event in zip(pairs, events, strict=True):
        if pair not in done:
            new.setdefault(pair, event)
    state.event_log.append([
        {"event_id": event.event_id, "type": event.type, "user_id": event.user_id,
         "push_id": event.push_id, "content_id": event.content_id,
         "ts": (event.ts or received).astimezone(UTC).isoformat(), "received_at": received.isoformat()}
        for event in new.values()
    ])
    results = []
    sends = []  # (sent time, send_at answered) of the sends applied whose push id carries a later send_at
    for event in events:
        try:
            status, detail = apply(state, event, event.ts or received)
        except EventAlreadyApplied:
            state.metrics.events.labels(event.type, "duplicate").inc()
            results.append({"event_id": event.event_id, "status": "duplicate",
                            "detail": "event id already applied to this cardholder: ignored"})
            continue
        state.metrics.events.labels(event.type, status).inc()
        results.append({"event_id": event.event_id, "status": status, "detail": detail})
        suggested = suggested_send_at(event.push_id) if event.type == "sent" else None
        if suggested is not None and status in ("applied", "recorded"):
            sends.append((event.ts or received, suggested))
    state.send_at_following.record(sends, snapshot.policy.policy.default_timezone)
    return {"results": results}
