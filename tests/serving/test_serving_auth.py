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
