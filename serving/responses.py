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


def encode_answers(body: Any, answers: Iterable[dict[str, Any]]) -> bytes:
    """`encode_json(body)` for a body holding rank `answers`; `ValueError` naming the item when a
    score or probability is not finite (orjson would write null where the schema promises a number)."""
    answers = list(answers)
    # one sum instead of a test per number: any NaN or infinity makes it non-finite (scores are float32
    # and probabilities at most 1, so finite values never add up to an overflow)
    total = sum([item["score"] + item.get("p_open", 0.0) + item.get("p_mute", 0.0)
                 for answer in answers for item in answer["items"]])
    if not math.isfinite(total):
        for answer in answers:
            for item in answer["items"]:
                for name in ("score", "p_open", "p_mute"):
                    value = item.get(name, 0.0)
                    if not math.isfinite(value):
                        raise ValueError(f"answer for {answer['user_id']!r}: item {item['content_id']!r} "
                                         f"has {name} {value}, not a finite number")
    return encode_json(body)


def answers_response(body: Any, answers: Iterable[dict[str, Any]]) -> Response:
    return Response(encode_answers(body, answers), media_type="application/json")
