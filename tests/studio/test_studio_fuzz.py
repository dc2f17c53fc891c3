"""Fuzz the studio's operations from the OpenAPI schema: never a 5xx, every 4xx says what is wrong."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.studio.conftest import ADMIN_HEADERS

pytestmark = [pytest.mark.redis, pytest.mark.slow]

seen: Counter[tuple[str, int]] = Counter()


def check(case) -> None:
    response = case.call(headers=ADMIN_HEADERS)
    seen[(case.operation.path, response.status_code)] += 1
    case.validate_response(response, checks=[not_a_server_error])
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("message"), str) and len(body["message"]) > 10


def test_studio_operations_never_fail_on_the_server(studio_settings, redis_client) -> None:
    from serving.app import create_app

    app = create_app(studio_settings.model_copy(update={"studio_users": 100, "studio_days": 3}))
    with TestClient(app) as client:
        # GET /v1/studio/world starts loading the world in the simulator process; finish that first
        assert client.get("/v1/studio/world", headers=ADMIN_HEADERS).status_code == 200
        app.state.studio.wait_for_world()
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [op for op in (result.ok() for result in schema.get_all_operations())
                      if "studio" in op.path]
        assert {op.path for op in operations} == {"/v1/studio/world", "/v1/studio/simulate"}
        for operation in operations:
            run = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                           suppress_health_check=list(HealthCheck))(given(case=operation.as_strategy())(check))
            run()
    assert seen[("/v1/studio/world", 200)] > 0
    assert seen[("/v1/studio/simulate", 422)] > 0, dict(seen)


def durations(low_seconds: int, high_days: int) -> st.SearchStrategy[str]:
    return st.one_of(st.integers(low_seconds, 3600).map(lambda n: f"{n}s"),
                     st.integers(1, high_days).map(lambda n: f"{n}d"))


clock = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@st.composite
def valid_drafts(draw) -> dict:
    """Policies the validator accepts, with extreme values: the simulator must answer 200 or a clear 422."""
    limits = []
    for index in range(draw(st.integers(0, 5))):
        window = draw(st.sampled_from(["calendar_day", "calendar_month", "rolling"]))
        limit = {"name": f"limit{index}", "window": window, "max": draw(st.integers(1, 10_000))}
        if window == "rolling":
            limit["duration"] = draw(durations(60, 365))
        if draw(st.booleans()):
            limit["kinds"] = draw(st.lists(st.sampled_from(["article", "promotion", "activity"]), min_size=1,
                                           max_size=2, unique=True))
        limits.append(limit)
    mute = {"pause": draw(st.one_of(st.just("forever"), durations(60, 60)))}
    document = {"version": draw(st.text("abc.-_0123456789", min_size=1, max_size=20)), "limits": limits,
                "retention": "800d", "mute": mute}
    if draw(st.booleans()):
        document["min_gap"] = draw(durations(1, 30))
    start, end = draw(clock), draw(clock)
    if start != end and draw(st.booleans()):
        document["quiet_hours"] = {"start": start, "end": end}
    if draw(st.booleans()):
        document["no_repeat"] = {"window": draw(st.one_of(st.just("forever"), durations(60, 90)))}
    if draw(st.booleans()):
        document["fatigue"] = {"after_unopened": draw(st.integers(1, 1000)), "pause": draw(durations(60, 90))}
    if draw(st.booleans()):
        document["campaign_throttle"] = {"max": draw(st.integers(1, 1000)), "per": draw(durations(1, 1))}
    document["transactional"] = {"counts_toward_limits": draw(st.booleans())}
    return document


def test_any_valid_draft_simulates_or_says_why_not(studio_settings, redis_client) -> None:
    from recsys.caps.policy import parse_policy
    from serving.app import create_app

    app = create_app(studio_settings.model_copy(update={"studio_users": 100, "studio_days": 3}))
    statuses: Counter[int] = Counter()
    with TestClient(app) as client:

        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(draft=valid_drafts(), days=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
        def run(draft: dict, days: int, seed: int) -> None:
            parse_policy(draft)  # the strategy only makes valid policies
            body = {"draft": draft, "days": days, "seed": seed, "charts": False}
            response = client.post("/v1/studio/simulate", json=body, headers=ADMIN_HEADERS)
            statuses[response.status_code] += 1
            assert response.status_code in (200, 422), response.text
            if response.status_code == 422:
                assert "simulator" in response.json()["message"]
            else:
                outcome = response.json()["report"]["outcomes"][1]
                assert outcome["total"]["attempts"] == (outcome["total"]["sent"] + outcome["total"]["blocked"]
                                                        + outcome["total"]["no_candidate"])

        run()
    assert statuses[200] > 20, statuses
