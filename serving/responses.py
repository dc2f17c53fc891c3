"""Fast JSON responses for the hot endpoints.

`/v1/rank` and `/v1/rank/batch` build their bodies from typed internal data, so they skip the
per-request re-validation FastAPI does for `response_model` and serialise directly with orjson; the
declared models still define the OpenAPI schema, and tests validate real answers against them.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson
from fastapi import Response

from recsys.times import iso_utc


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON; datetimes as ISO 8601 in UTC with `Z`."""
    return orjson.dumps(body, default=_encode, option=orjson.OPT_PASSTHROUGH_DATETIME)


def require_finite(values: list[float], what: str) -> None:
    """`ValueError` naming `what` when a value is NaN or infinite: orjson would write null where the
    schema promises a number. One sum tests them all (finite values only ever sum to a non-finite
    one by overflow, then each is looked at)."""
    if not math.isfinite(sum(values)):
        bad = [value for value in values if not math.isfinite(value)]
        if bad:
            raise ValueError(f"{what}: {bad[0]} is not a finite number")


def json_response(body: Any) -> Response:
    return Response(encode_json(body), media_type="application/json")
