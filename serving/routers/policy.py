"""The anti-disturbance policy: read (scheduler, admin), change and roll back (admin), with history.

Every change is validated by `recsys.caps.policy`, stored as a new revision in Redis with the
author (token name), time and diff, and picked up by every worker within a second.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query

from recsys.caps.policy import parse_policy
from serving.auth import AdminAccess, ReadAccess
from serving.deps import State
from serving.policy_store import PolicyRevision
from serving.schemas import PolicyVersions, PolicyView, RollbackRequest

router = APIRouter(prefix="/v1", tags=["policy"])

EXAMPLE = {"version": "2026.12-strict", "limits": [{"name": "daily", "window": "calendar_day", "max": 1}]}


def view(revision: PolicyRevision) -> dict[str, Any]:
    return {"revision": revision.revision, "author": revision.author, "at": revision.at,
            "note": revision.note, "policy": revision.document}


def changed(state, revision: PolicyRevision) -> dict[str, Any]:
    state.refresh(force=True)
    return view(revision)


@router.get("/policy", response_model=PolicyView, summary="The current policy and its revision")
def get_policy(state: State, principal: ReadAccess) -> dict:
    return view(state.snapshot(need_model=False).policy)


@router.put("/policy", response_model=PolicyView, summary="Replace the policy (admin)",
            responses={409: {"description": "Changed concurrently since If-Match"},
                       422: {"description": "Invalid policy, with every offending field named"}})
def put_policy(
    state: State,
    principal: AdminAccess,
    document: Annotated[dict[str, Any], Body(examples=[EXAMPLE])],
    if_match: Annotated[str | None, Header(pattern=r"^\d{1,9}$",
                                           description="Revision this change is based on")] = None,
    note: Annotated[str, Query(max_length=200, description="Why (kept in the audit trail)")] = "",
) -> dict:
    """The body is a whole policy document (the YAML format as JSON). Send `If-Match: <revision>` to
    refuse the change if someone else changed the policy in between."""
    policy = parse_policy(document, "request body")
    based_on = int(if_match) if if_match is not None else None
    return changed(state, state.policies.put(policy, principal.name, based_on=based_on, note=note))


@router.get("/policy/versions", response_model=PolicyVersions, summary="Revision history with diffs")
def policy_versions(state: State, principal: ReadAccess,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    revisions = state.policies.history(limit)
    return {
        "current": state.policies.current_revision(),
        "revisions": [
            {"revision": r.revision, "version": r.policy.version, "author": r.author, "at": r.at,
             "note": r.note, "diff": r.diff}
            for r in revisions
        ],
    }


@router.get("/policy/versions/{revision}", response_model=PolicyView, summary="One past revision")
def policy_revision(revision: Annotated[int, Path(ge=1, le=10**9)], state: State,
                          principal: ReadAccess) -> dict:
    return view(state.policies.get(revision))


@router.post("/policy/rollback", response_model=PolicyView, summary="Make an old revision current (admin)")
def rollback(body: RollbackRequest, state: State, principal: AdminAccess) -> dict:
    old = state.policies.get(body.revision)
    revision = state.policies.put(old.policy, principal.name, note=f"rollback to revision {body.revision}")
    return changed(state, revision)
