"""Policy endpoints: validated, versioned, audited, rolled back, applied without restart."""

from __future__ import annotations

import pytest
from serving_support import ADMIN_HEADERS, SCHEDULER_HEADERS

pytestmark = pytest.mark.redis


def current(api) -> dict:
    return api.get("/v1/policy", headers=SCHEDULER_HEADERS).json()


def test_initial_policy_is_the_shipped_default(api) -> None:
    from recsys.caps.policy import default_policy

    body = current(api)
    assert body["revision"] == 1 and body["author"] == "bootstrap"
    assert body["policy"] == default_policy().to_dict()


def test_invalid_policy_is_refused_with_the_field_named(api) -> None:
    document = current(api)["policy"]
    document["limits"][0]["max"] = -1
    response = api.put("/v1/policy", json=document, headers=ADMIN_HEADERS)
    assert response.status_code == 422
    assert "limits[0].max" in response.json()["message"]
    assert current(api)["revision"] == 1


def test_change_is_audited_and_applied_to_ranking(api, published, dataset, daytime) -> None:
    user = dataset.cardholders["user_id"].astype(str).iloc[30]
    rank = {"user_id": user, "now": daytime, "reserve": True}
    assert api.post("/v1/rank", json=rank, headers=SCHEDULER_HEADERS).json()["push_id"]
    assert api.post("/v1/rank", json=rank, headers=SCHEDULER_HEADERS).json()["push_id"] is None

    document = current(api)["policy"]
    document["version"] = "2026.12-two-a-day"
    document["limits"][0]["max"] = 2
    document["min_gap"] = None
    response = api.put("/v1/policy", json=document, headers=ADMIN_HEADERS, params={"note": "holiday"})
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 2 and response.json()["author"] == "admin"

    second = api.post("/v1/rank", json=rank, headers=SCHEDULER_HEADERS).json()
    assert second["push_id"], second
    assert second["caps"]["policy_version"] == "2026.12-two-a-day"

    history = api.get("/v1/policy/versions", headers=SCHEDULER_HEADERS).json()
    assert history["current"] == 2
    latest = history["revisions"][0]
    assert latest["note"] == "holiday" and latest["author"] == "admin"
    paths = {change["path"]: (change["old"], change["new"]) for change in latest["diff"]}
    assert paths["version"] == ("2026.11-default", "2026.12-two-a-day")
    assert paths["min_gap"] == ("12h", None)
    assert any(path.startswith("limits") for path in paths)


def test_rollback_and_conflict(api) -> None:
    original = current(api)["policy"]
    changed = {**original, "version": "v2"}
    assert api.put("/v1/policy", json=changed, headers=ADMIN_HEADERS).status_code == 200
    stale = api.put("/v1/policy", json={**original, "version": "v3"},
                    headers={**ADMIN_HEADERS, "If-Match": "1"})
    assert stale.status_code == 409 and "revision 2" in stale.json()["message"]
    back = api.post("/v1/policy/rollback", json={"revision": 1}, headers=ADMIN_HEADERS)
    assert back.status_code == 200
    assert back.json()["revision"] == 3 and back.json()["policy"] == original
    assert back.json()["note"] == "rollback to revision 1"
    missing = api.post("/v1/policy/rollback", json={"revision": 42}, headers=ADMIN_HEADERS)
    assert missing.status_code == 404 and "42" in missing.json()["message"]


def test_other_workers_pick_up_a_policy_change(api, settings) -> None:
    """A second app (another worker) on the same Redis applies the new revision on its next request."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(settings)) as other:
        assert other.get("/v1/policy", headers=SCHEDULER_HEADERS).json()["revision"] == 1
        document = {**current(api)["policy"], "version": "from-worker-a"}
        api.put("/v1/policy", json=document, headers=ADMIN_HEADERS)
        body = other.get("/v1/policy", headers=SCHEDULER_HEADERS).json()
        assert body["revision"] == 2 and body["policy"]["version"] == "from-worker-a"
        assert other.app.state.serving.engine.policy.version == "from-worker-a"


def test_named_administrators_and_the_no_limits_override_are_audited(settings, redis_client) -> None:
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from serving.app import create_app

    named = settings.model_copy(update={"admin_tokens": {"alice": SecretStr("alice-token-0a9f3c7e21")}})
    with TestClient(create_app(named)) as client:
        alice = {"Authorization": "Bearer alice-token-0a9f3c7e21"}
        refused = client.put("/v1/policy", json={"version": "no-caps"}, headers=alice)
        assert refused.status_code == 422 and "override_no_limits" in refused.json()["message"]
        document = {"version": "no-caps", "override_no_limits": "bill reminders only this week"}
        stored = client.put("/v1/policy", json=document, headers=alice).json()
        assert stored["author"] == "alice"
        latest = client.get("/v1/policy/versions", headers=alice).json()["revisions"][0]
        assert latest["author"] == "alice"
        change = {"path": "override_no_limits", "old": None, "new": "bill reminders only this week"}
        assert change in latest["diff"]
