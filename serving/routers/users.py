"""`GET /v1/users/{user_id}/caps`: a cardholder's cap counts and when the next push may go out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator

from recsys.publication import decode_users
from serving.auth import ReadAccess
from serving.deps import State
from serving.schemas import AwareDatetime, CapsState, refuse_card_numbers

router = APIRouter(prefix="/v1", tags=["caps"])

UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$"),
                   AfterValidator(refuse_card_numbers)]


@router.get("/users/{user_id}/caps", response_model=CapsState, summary="Cap counts and next eligible time")
def user_caps(user_id: UserId, state: State, principal: ReadAccess,
                    now: Annotated[AwareDatetime | None, Query(description="Evaluate at this time")] = None
                    ) -> dict:
    snapshot = state.snapshot(need_model=False)
    timezone = None
    if snapshot.model is not None:
        blob = state.user_records(snapshot.model.version, [user_id])[0]
        if blob is not None:
            records = decode_users([blob], snapshot.model.item_dtype, snapshot.model.feature_dtype)
            timezone = snapshot.model.known(records).timezone[0]
    caps = state.engine.state(user_id, timezone=timezone, now=state.check_now(now, "now"))
    return {
        "user_id": caps.user_id, "as_of": caps.as_of, "timezone": caps.timezone,
        "limits": [
            {"name": c.name, "count": c.count, "max": c.max, "window": c.window,
             "window_start": c.window_start, "window_end": c.window_end}
            for c in caps.limits
        ],
        "pending_reservations": len(caps.pending), "sent_total": caps.sent_total,
        "unopened_streak": caps.unopened_streak, "last_sent_at": caps.last_sent_at,
        "opted_out": caps.opted_out, "muted": caps.muted, "next_eligible_at": caps.next_eligible_at,
        "blocks": [{"rule": b.rule, "detail": b.detail, "eligible_at": b.eligible_at} for b in caps.blocks],
        "policy_version": caps.policy_version,
    }
