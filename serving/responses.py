"""Fast JSON responses for the hot endpoints.

`/v1/rank` and `/v1/rank/batch` build their bodies from typed internal data, so they skip the
per-request re-validation FastAPI does for `response_model` and serialise directly with orjson; the
declared models still define the OpenAPI schema, and tests validate real answers against them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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


_NUMBERS = ("score", "p_open", "p_mute")
# orjson writes NaN and infinity as null; inside a string a quote is escaped, so these bytes only
# ever come from a number written as null
_NULL_NUMBERS = tuple(f'"{name}":null'.encode() for name in _NUMBERS)


def encode_answers(body: Any, answers: Iterable[dict[str, Any]]) -> bytes:
    """`encode_json(body)` for a body holding rank `answers`; `ValueError` naming the item when a
    score or probability is not finite (the schema promises a number there, orjson would write null)."""
    encoded = encode_json(body)
    if any(null in encoded for null in _NULL_NUMBERS):
        for answer in answers:
            for item in answer["items"]:
                for name in _NUMBERS:
                    value = item.get(name, 0.0)
                    if value is not None and not math.isfinite(value):
                        raise ValueError(f"answer for {answer['user_id']!r}: item {item['content_id']!r} "
                                         f"has {name} {value}, not a finite number")
    return encoded


def answers_response(body: Any, answers: Iterable[dict[str, Any]]) -> Response:
    return Response(encode_answers(body, answers), media_type="application/json")
