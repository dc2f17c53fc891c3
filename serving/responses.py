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


_ENCODER = json.JSONEncoder(default=_encode, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON; datetimes as ISO 8601."""
    return _ENCODER.encode(body).encode()


def json_response(body: Any) -> Response:
    return Response(encode_json(body), media_type="application/json")
