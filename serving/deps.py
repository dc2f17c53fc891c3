"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.state import ServingState


def serving_state(request: Request) -> ServingState:
    return request.app.state.serving


State = Annotated[ServingState, Depends(serving_state)]
