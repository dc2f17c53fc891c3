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


# A rank answer (`schemas.RankResponse`) written into its keys' order with each value written by orjson:
# a 1k batch's answers cost about a third of building some 17 dictionaries per answer for orjson to walk
# (README, "Load"). `ANSWER_KEYS` names the slots in order; a test holds the bytes equal to orjson's
# writing of the same answer as a dictionary.
ANSWER = (b'{"user_id":%s,"items":[%s],"model_version":%s,"registry_model":%s,"registry_version":%s,'
          b'"fallback":%s,"fallback_source":%s,"caps":{"allowed":%s,"blocks":%s,"next_eligible_at":%s,'
          b'"policy_version":%s,"short":%s},"push_id":%s,"reservation_expires_at":%s,"skipped":%s,'
          b'"decision":%s,"reason":%s,"send_at":%s,"best_hours":%s}')
ANSWER_KEYS = ("user_id", "items", "model_version", "registry_model", "registry_version", "fallback",
               "fallback_source", "caps.allowed", "caps.blocks", "caps.next_eligible_at",
               "caps.policy_version", "caps.short", "push_id", "reservation_expires_at", "skipped",
               "decision", "reason", "send_at", "best_hours")
# One ranked item (`schemas.RankedItem`): its fixed part (`item_head`), the score, the reason, then
# `odds` (`item_odds`) or nothing.
ITEM = b'{%s,"score":%s,"reason":%s%s}'


def item_head(content_id: str, title: str, kind: str) -> bytes:
    """The part of an answered item that depends on the item alone (written once per published item)."""
    return b'"content_id":%s,"title":%s,"kind":%s' % (orjson.dumps(content_id), orjson.dumps(title),
                                                      orjson.dumps(kind))


def item_odds(p_open: float, p_mute: float) -> bytes:
    return b',"p_open":%s,"p_mute":%s' % (orjson.dumps(p_open), orjson.dumps(p_mute))


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
