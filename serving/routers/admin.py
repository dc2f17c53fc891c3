"""Administration: force every reload check now (new publication or policy revision)."""

from __future__ import annotations

from fastapi import APIRouter

from serving.auth import AdminAccess
from serving.deps import State
from serving.schemas import ReloadResponse

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadResponse, summary="Reload the live model and policy now (admin)")
def reload(state: State, principal: AdminAccess) -> dict:
    """Workers also reload on their own within `RECSYS_RELOAD_INTERVAL_SECONDS`; this makes the worker
    that answers do it immediately (other workers follow at their next check)."""
    state.refresh(force=True)
    return {"model_version": state.model.version if state.model else None,
            "policy_revision": state.policy.revision if state.policy else 0}
