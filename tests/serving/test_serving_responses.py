"""Rank answers are JSON that reads back to the same values; non-finite numbers are refused."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.responses import encode_json, require_finite

text = st.text(max_size=30)  # every code point: quotes, backslashes, control characters, emoji
score = st.floats(width=32) | st.floats() | st.sampled_from([1e-05, 1e-4, 9.99e-5, 1e16, -0.0, 0.0])
item = st.fixed_dictionaries({"content_id": text, "title": text, "kind": text, "score": score,
                              "reason": text})
block = st.fixed_dictionaries({"rule": text, "detail": text, "eligible_at": st.none() | text})
answer = st.fixed_dictionaries({
    "user_id": text, "items": st.lists(item, max_size=4), "model_version": text, "fallback": st.booleans(),
    "fallback_source": st.none() | text,
    "caps": st.fixed_dictionaries({"allowed": st.booleans(), "blocks": st.lists(block, max_size=3),
                                   "next_eligible_at": st.none() | text, "policy_version": text,
                                   "short": st.booleans()}),
    "push_id": st.none() | text, "reservation_expires_at": st.none() | text,
    "skipped": st.lists(st.fixed_dictionaries({"content_id": text, "reason": text}), max_size=2),
})


def finite(answers: list[dict]) -> bool:
    return all(math.isfinite(i["score"]) for a in answers for i in a["items"])


@settings(max_examples=400, deadline=None)
@given(answers=st.lists(answer, min_size=1, max_size=3))
def test_answers_read_back_as_written(answers) -> None:
    for body, held in [(answers[0], answers[:1]), ({"results": answers, "model_version": "v1"}, answers)]:
        scores = [item["score"] for held_answer in held for item in held_answer["items"]]
        if finite(held):
            require_finite(scores, "scores")
            assert json.loads(encode_json(body)) == body
        else:
            with pytest.raises(ValueError, match="not a finite number"):
                require_finite(scores, "scores")


def test_a_non_finite_score_is_named() -> None:
    with pytest.raises(ValueError, match="scores for 'u7': nan is not a finite number"):
        require_finite([1.0, math.nan, 2.0], "scores for 'u7'")
    with pytest.raises(ValueError, match="inf is not"):
        require_finite([3.4e38, math.inf], "x")
    require_finite([1.7e308, 1.7e308], "large but finite")
