"""Fast JSON responses for the hot endpoints.

`/v1/rank` and `/v1/rank/batch` build their bodies from typed internal data, so they skip the
per-request re-validation FastAPI does for `response_model` and serialise directly; the declared
models still define the OpenAPI schema, and the schema fuzz test checks every answer against it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import Response


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def json_response(body: Any) -> Response:
    content = json.dumps(body, default=_encode, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(content.encode(), media_type="application/json")
