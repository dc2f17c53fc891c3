"""Bearer tokens: missing or wrong -> 401, scheduler on admin operations -> 403; no secret in logs."""

from __future__ import annotations

import logging

import pytest
from serving_support import ADMIN, ADMIN_HEADERS, SCHEDULER, SCHEDULER_HEADERS

pytestmark = pytest.mark.redis


def test_missing_and_wrong_tokens_are_401(api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {SCHEDULER}"}):
        response = api.post("/v1/rank", json={"user_id": "u1"}, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert "token" in response.json()["message"]


def test_scheduler_may_not_change_policy_or_reload(api) -> None:
    current = api.get("/v1/policy", headers=SCHEDULER_HEADERS)
    assert current.status_code == 200
    response = api.put("/v1/policy", json=current.json()["policy"], headers=SCHEDULER_HEADERS)
    assert response.status_code == 403
    assert "admin" in response.json()["message"]
    assert api.post("/v1/admin/reload", headers=SCHEDULER_HEADERS).status_code == 403
    assert api.post("/v1/policy/rollback", json={"revision": 1}, headers=SCHEDULER_HEADERS).status_code == 403
    assert api.post("/v1/admin/reload", headers=ADMIN_HEADERS).status_code == 200


def test_operations_endpoints_need_no_token(api) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/metrics").status_code == 200


def test_tokens_never_reach_the_logs(api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.post("/v1/rank", json={"user_id": "u1"}, headers={"Authorization": f"Bearer {SCHEDULER}x"})
    api.put("/v1/policy", json={"version": "x"}, headers=ADMIN_HEADERS)
    api.post("/v1/rank", json={"user_id": "u1"}, headers=SCHEDULER_HEADERS)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert SCHEDULER not in text and ADMIN not in text


def test_placeholder_tokens_refused_in_production() -> None:
    from recsys.config import Settings

    with pytest.raises(ValueError, match="RECSYS_SCHEDULER_TOKEN"):
        Settings(environment="production", admin_token="a-real-admin-secret")


ADMIN_OK = "Adm1n-tok3n-9f8e7d6c5b"


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ({"scheduler_token": "CHANGEME", "admin_token": ADMIN_OK}, "SCHEDULER_TOKEN is unset or a"),
        ({"scheduler_token": "x", "admin_token": ADMIN_OK}, "SCHEDULER_TOKEN is too weak"),
        ({"scheduler_token": "aaaaaaaaaaaaaaaaaaaaaaaa", "admin_token": ADMIN_OK}, "too weak"),
        ({"scheduler_token": "please-change-me-now-1", "admin_token": ADMIN_OK}, "placeholder"),
        ({"scheduler_token": "Sch3d-tok3n-1a2b3c4d5e", "admin_token": "Sch3d-tok3n-1a2b3c4d5e"},
         "ADMIN_TOKEN is the same token as RECSYS_SCHEDULER_TOKEN"),
        ({"scheduler_token": "Sch3d-tok3n-1a2b3c4d5e", "admin_token": "Adm1n-tok3n-9f8e7d6c5b",
          "admin_tokens": {"alice": "Sch3d-tok3n-1a2b3c4d5e"}}, r"ADMIN_TOKENS\[alice\] is the same token"),
        ({"scheduler_token": "Sch3d-tok3n-1a2b3c4d5e", "admin_token": "Adm1n-tok3n-9f8e7d6c5b",
          "server_time": "2026-01-01T00:00:00Z"}, "SERVER_TIME fixes the server clock"),
    ],
)
def test_weak_or_shared_tokens_refused_in_production(tokens: dict, message: str) -> None:
    from recsys.config import Settings

    with pytest.raises(ValueError, match=message):
        Settings(environment="production", **tokens)


def test_strong_distinct_tokens_are_accepted_and_sharing_is_refused_everywhere() -> None:
    from recsys.config import Settings

    Settings(environment="production", scheduler_token="Sch3d-tok3n-1a2b3c4d5e",
             admin_token="Adm1n-tok3n-9f8e7d6c5b", admin_tokens={"alice": "Al1ce-tok3n-0f9e8d7c6b"})
    with pytest.raises(ValueError, match="same token"):
        Settings(scheduler_token="same", admin_token="same")
