"""The studio page and `POST /v1/studio/simulate` through HTTP, with a real Redis."""

from __future__ import annotations

import base64
import re

import pytest
from fastapi.testclient import TestClient

from recsys.caps.policy import default_policy
from tests.studio.conftest import ADMIN_HEADERS, SCHEDULER_HEADERS

pytestmark = pytest.mark.redis


def stricter() -> dict:
    document = default_policy().to_dict()
    document["version"] = "2026.12-strict"
    document["limits"][1]["max"] = 2  # monthly
    document["min_gap"] = "3d"
    return document


def test_page_and_assets_are_served_without_any_outside_resource(studio_api: TestClient) -> None:
    page = studio_api.get("/studio")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    texts = [page.text]
    for name, kind in (("studio.js", "javascript"), ("studio.css", "css")):
        asset = studio_api.get(f"/studio/assets/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
        texts.append(asset.text)
    for text in texts:
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE)
    assert studio_api.get("/studio/assets/../app.py").status_code == 404
    assert studio_api.get("/studio/assets/secrets.txt").status_code == 404


def test_data_and_actions_need_the_admin_token(studio_api: TestClient) -> None:
    body = {"draft": stricter()}
    assert studio_api.post("/v1/studio/simulate", json=body).status_code == 401
    assert studio_api.post("/v1/studio/simulate", json=body, headers=SCHEDULER_HEADERS).status_code == 403
    assert studio_api.get("/v1/studio/world", headers=SCHEDULER_HEADERS).status_code == 403
    wrong = {"Authorization": "Bearer not-the-token"}
    assert studio_api.get("/v1/studio/world", headers=wrong).status_code == 401


def test_simulate_compares_the_live_policy_with_a_draft(studio_api: TestClient) -> None:
    world = studio_api.get("/v1/studio/world", headers=ADMIN_HEADERS)
    assert world.status_code == 200 and world.json()["sample"] == 300 and world.json()["truth_path"]
    response = studio_api.post("/v1/studio/simulate", json={"draft": stricter(), "days": 8},
                               headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    data = response.json()
    live, draft = data["report"]["outcomes"]
    assert live["label"] == f"live (rev {data['live_revision']})" and draft["label"] == "draft"
    assert live["policy"]["version"] == default_policy().version
    assert draft["policy"]["limits"][1]["max"] == 2
    assert data["report"]["world"]["cardholders"] == 300 and data["report"]["config"]["days"] == 8
    assert draft["total"]["sent"] < live["total"]["sent"]
    assert draft["total"]["expected_mutes"] < live["total"]["expected_mutes"]
    assert set(data["charts"]) == {"summary", "blocked_by_rule", "segments", "daily"}
    # the page names rules in plain words, for every rule either policy has
    words = data["report"]["rule_words"]
    assert words["limit:monthly"] == "Monthly limit (pushes per calendar month)"
    assert set(live["rules"]) | set(draft["rules"]) <= set(words)
    for uri in data["charts"].values():
        assert base64.b64decode(uri.removeprefix("data:image/png;base64,"))[:4] == b"\x89PNG"
    # nothing changed: the live policy is still revision 1
    assert studio_api.get("/v1/policy", headers=ADMIN_HEADERS).json()["revision"] == data["live_revision"]
    again = studio_api.post("/v1/studio/simulate", json={"draft": stricter(), "days": 8},
                            headers=ADMIN_HEADERS).json()

    def numbers(result: dict) -> list[dict]:
        outcomes = result["report"]["outcomes"]
        return [{key: value for key, value in outcome.items() if key != "seconds"} for outcome in outcomes]

    assert numbers(again) == numbers(data)


def test_invalid_draft_is_refused_naming_the_field(studio_api: TestClient) -> None:
    draft = stricter()
    draft["limits"][0]["max"] = 0
    draft["quiet_hours"] = {"start": "25:00", "end": "08:00"}
    response = studio_api.post("/v1/studio/simulate", json={"draft": draft}, headers=ADMIN_HEADERS)
    assert response.status_code == 422
    message = response.json()["message"]
    assert "limits[0].max" in message and "quiet_hours.start" in message


def test_without_a_world_the_studio_says_what_to_configure(studio_settings, redis_client) -> None:
    from serving.app import create_app

    settings = studio_settings.model_copy(update={"data_dir": None, "studio_data_dir": None})
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/studio/simulate", json={"draft": stricter()}, headers=ADMIN_HEADERS)
        assert response.status_code == 503
        assert "RECSYS_STUDIO_DATA_DIR" in response.json()["message"]
        assert client.get("/studio").status_code == 200


def test_a_limit_beyond_what_the_simulator_tracks_is_a_clear_422(studio_api: TestClient) -> None:
    draft = {"version": "huge", "limits": [{"name": "yearly", "window": "rolling", "duration": "365d",
                                            "max": 1000}], "retention": "400d", "mute": {"pause": "60s"}}
    response = studio_api.post("/v1/studio/simulate", json={"draft": draft, "days": 30, "charts": False},
                               headers=ADMIN_HEADERS)
    assert response.status_code == 422
    assert "limit 'yearly' allows 1000" in response.json()["message"]
    assert "lower the limit" in response.json()["message"]


def test_simulations_run_in_a_process_that_ends_with_the_server(studio_settings, redis_client) -> None:
    import multiprocessing
    import os

    from serving.app import create_app

    # children started earlier in the session (e.g. Dask workers of other tests) are not the studio's
    earlier = {child.pid for child in multiprocessing.active_children()}
    app = create_app(studio_settings.model_copy(update={"studio_users": 50, "studio_days": 2}))
    with TestClient(app) as client:
        response = client.post("/v1/studio/simulate", json={"draft": stricter(), "days": 2, "charts": False},
                               headers=ADMIN_HEADERS)
        assert response.status_code == 200, response.text
        simulators = [child for child in multiprocessing.active_children() if child.pid not in earlier]
        assert simulators and all(child.pid != os.getpid() for child in simulators)
    assert not any(child.is_alive() for child in simulators), "a simulator outlived the server"
