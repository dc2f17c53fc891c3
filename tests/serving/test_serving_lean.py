"""The lean path of `/v1/rank` and `/v1/rank/batch` answers exactly as the FastAPI routes do.

Two apps over the same Redis prefix: one with the lean path (the default) and one without it.
Requests without a reservation are deterministic, so both answers must be identical, byte for byte
in the body; errors (auth, validation, domain) must have the same status and message.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from serving_support import ADMIN_HEADERS, SCHEDULER_HEADERS

from serving.app import create_app

pytestmark = pytest.mark.redis


@pytest.fixture
def pair(settings, redis_client):
    with TestClient(create_app(settings)) as lean, TestClient(create_app(settings, lean=False)) as full:
        yield lean, full


def users(dataset, n: int) -> list[str]:
    return dataset.cardholders["user_id"].astype(str).tolist()[:n]


def same(pair, path: str, body, headers=SCHEDULER_HEADERS, raw: bytes | None = None,
         content_type: str = "application/json") -> dict:
    answers = []
    for client in pair:
        content = raw if raw is not None else json.dumps(body).encode()
        response = client.post(path, content=content, headers={**headers, "Content-Type": content_type})
        answers.append((response.status_code, response.headers.get("content-type"), response.content))
    assert answers[0] == answers[1]
    return {"status": answers[0][0], "body": json.loads(answers[0][2])}


def test_rank_answers_match(pair, published, dataset, daytime) -> None:
    for user in users(dataset, 20):
        answer = same(pair, "/v1/rank", {"user_id": user, "k": 4, "now": daytime})
        assert answer["status"] == 200 and answer["body"]["user_id"] == user
    unknown = same(pair, "/v1/rank", {"user_id": "nobody-known", "now": daytime,
                                      "features": {"card_tier=gold": 1.0}})
    assert unknown["status"] == 200 and unknown["body"]["fallback"] is True
    requested = same(pair, "/v1/rank", {"user_id": users(dataset, 1)[0], "now": daytime,
                                        "candidates": ["no-such-content"]})
    assert requested["body"]["skipped"][0]["content_id"] == "no-such-content"
    admin = same(pair, "/v1/rank", {"user_id": users(dataset, 1)[0], "now": daytime}, headers=ADMIN_HEADERS)
    assert admin["status"] == 200


def test_batch_answers_match(pair, published, dataset, daytime) -> None:
    body = {"requests": [{"user_id": user, "k": 2, "now": daytime} for user in users(dataset, 50)]}
    answer = same(pair, "/v1/rank/batch", body)
    assert answer["status"] == 200 and len(answer["body"]["results"]) == 50


@pytest.mark.parametrize(("raw", "status", "fragment"), [
    (b'{"user_id": 5}', 422, "user_id"),
    (b'{"user_id": "u1", "k": 0}', 422, "invalid request: k:"),
    (b'{"user_id": "u1", "unexpected": 1}', 422, "unexpected"),
    (b'{"user_id": "u1", "now": "2026-01-01T10:00:00"}', 422, "time zone"),
    (b'{"user_id": ', 422, "JSON"),
    (b'[1, 2]', 422, "invalid request"),
    (b'', 422, "invalid request"),
    (b'{"user_id": "u1", "candidates": ["a", "a"]}', 422, "listed twice"),
])
def test_invalid_bodies_get_the_same_errors(pair, published, raw, status, fragment) -> None:
    answer = same(pair, "/v1/rank", None, raw=raw)
    assert answer["status"] == status
    assert fragment in json.dumps(answer["body"])


def test_auth_and_content_type_get_the_same_answers(pair, published, dataset, daytime) -> None:
    body = {"user_id": users(dataset, 1)[0], "now": daytime}
    assert same(pair, "/v1/rank", body, headers={})["status"] == 401
    assert same(pair, "/v1/rank", body, headers={"Authorization": "Bearer wrong"})["status"] == 401
    assert same(pair, "/v1/rank", body, headers={"Authorization": "Basic abc"})["status"] == 401
    assert same(pair, "/v1/rank/batch", {"requests": [body]}, headers={})["status"] == 401
    text = same(pair, "/v1/rank", body, content_type="text/plain")
    assert text["status"] == 422


def test_domain_errors_use_the_app_handlers(pair, dataset, daytime) -> None:
    # Nothing published: both paths answer 503 with the remedy.
    answer = same(pair, "/v1/rank", {"user_id": "u1", "now": daytime})
    assert answer["status"] == 503 and "recsys publish" in answer["body"]["message"]


def test_lean_requests_are_counted_under_their_route(pair, published, dataset, daytime) -> None:
    lean, _ = pair
    for user in users(dataset, 3):
        lean.post("/v1/rank", json={"user_id": user, "now": daytime}, headers=SCHEDULER_HEADERS)
    metrics = lean.get("/metrics").text
    line = next(line for line in metrics.splitlines()
                if line.startswith("qianmian_http_requests_total{") and 'route="/v1/rank"' in line
                and 'status="200"' in line)
    assert float(line.rsplit(" ", 1)[1]) == 3.0


def test_concurrent_requests_are_coalesced_and_each_gets_its_own_answer(
        settings, redis_client, published, dataset, daytime) -> None:
    import asyncio

    import httpx

    holders = users(dataset, 12)
    twice = holders[0]
    app, full = create_app(settings), create_app(settings, lean=False)

    async def scenario():
        async with app.router.lifespan_context(app), full.router.lifespan_context(full):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                         headers=SCHEDULER_HEADERS) as client:
                reserve = [{"user_id": u, "now": daytime, "reserve": True} for u in [*holders, twice]]
                reserved = await asyncio.gather(*(client.post("/v1/rank", json=b) for b in reserve))
                plain = [{"user_id": u, "now": daytime, "k": 5} for u in holders]
                answers = await asyncio.gather(*(client.post("/v1/rank", json=b) for b in plain))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=full), base_url="http://api",
                                         headers=SCHEDULER_HEADERS) as client:
                expected = [await client.post("/v1/rank", json=b) for b in plain]
        return reserved, answers, expected

    reserved, answers, expected = asyncio.run(scenario())
    lean = app.middleware_stack  # built on the first request; the lean middleware is in its chain
    while not hasattr(lean, "coalescer"):
        lean = lean.app
    assert lean.coalescer.groups < lean.coalescer.requests, "concurrent requests were not ranked together"
    bodies = [response.json() for response in reserved]
    assert [body["user_id"] for body in bodies] == [*holders, twice]
    # The cardholder asked for twice: one reservation, then the daily cap blocks the second request.
    pair = [body for body in bodies if body["user_id"] == twice]
    assert sum(body["push_id"] is not None for body in pair) == 1
    assert all(body["push_id"] for body in bodies if body["user_id"] != twice and body["caps"]["allowed"])
    assert [r.content for r in answers] == [r.content for r in expected]
