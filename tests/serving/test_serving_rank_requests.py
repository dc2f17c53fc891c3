"""What `/v1/rank` answers to malformed or unauthorised requests, and to many requests at once."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from serving_support import SCHEDULER_HEADERS

from serving.app import create_app

pytestmark = pytest.mark.redis


def users(dataset, n: int) -> list[str]:
    return dataset.cardholders["user_id"].astype(str).tolist()[:n]


@pytest.mark.parametrize(("raw", "fragment"), [
    (b'{"user_id": 5}', "user_id"),
    (b'{"user_id": "u1", "k": 0}', "invalid request: k:"),
    (b'{"user_id": "u1", "unexpected": 1}', "unexpected"),
    (b'{"user_id": "u1", "now": "2026-01-01T10:00:00"}', "time zone"),
    (b'{"user_id": ', "JSON"),
    (b'[1, 2]', "invalid request"),
    (b'', "invalid request"),
    (b'{"user_id": "u1", "candidates": ["a", "a"]}', "listed twice"),
])
def test_invalid_bodies_are_422_naming_the_problem(api, published, raw, fragment) -> None:
    headers = {**SCHEDULER_HEADERS, "Content-Type": "application/json"}
    response = api.post("/v1/rank", content=raw, headers=headers)
    assert response.status_code == 422
    assert fragment in json.dumps(response.json())


def test_tokens_and_content_type(api, published, dataset, daytime) -> None:
    body = json.dumps({"user_id": users(dataset, 1)[0], "now": daytime})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        response = api.post("/v1/rank", content=body, headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert api.post("/v1/rank/batch", json={"requests": [json.loads(body)]}).status_code == 401
    text = api.post("/v1/rank", content=body, headers={**SCHEDULER_HEADERS, "Content-Type": "text/plain"})
    assert text.status_code == 422
    assert text.json()["message"] == ("invalid request: body: the Content-Type is 'text/plain', not JSON: "
                                      "send the body as JSON with Content-Type: application/json")
    form = api.post("/v1/events", content=b'{"events": []}', headers={
        **SCHEDULER_HEADERS, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 422
    assert "'application/x-www-form-urlencoded', not JSON" in form.json()["message"]
    bare = api.post("/v1/rank", content=body, headers=SCHEDULER_HEADERS)
    assert "content-type" not in bare.request.headers
    assert bare.status_code == 422 and "the Content-Type header is missing" in bare.json()["message"]


def test_malformed_json_names_line_column_and_what_was_expected(api, published) -> None:
    headers = {**SCHEDULER_HEADERS, "Content-Type": "application/json"}
    raw = b'{\n  "user_id": "u1",\n  "k": 3\n  "now": null\n}'
    response = api.post("/v1/rank", content=raw, headers=headers)
    assert response.status_code == 422
    assert response.json()["message"] == (
        "invalid request: body: malformed JSON at line 4, column 3: Expecting ',' delimiter")
    one_line = api.post("/v1/events", content=b'{"events": [{"event_id": }]}', headers=headers)
    assert one_line.json()["errors"] == [
        {"location": "body", "message": "malformed JSON at line 1, column 26: Expecting value"}]


def test_rank_requests_are_counted_under_their_route(api, published, dataset, daytime) -> None:
    for user in users(dataset, 3):
        api.post("/v1/rank", json={"user_id": user, "now": daytime}, headers=SCHEDULER_HEADERS)
    line = next(line for line in api.get("/metrics").text.splitlines()
                if line.startswith("qianmian_http_requests_total{") and 'route="/v1/rank"' in line
                and 'status="200"' in line)
    assert float(line.rsplit(" ", 1)[1]) == 3.0


def test_concurrent_requests_are_coalesced_and_each_gets_its_own_answer(
        settings, redis_client, published, dataset, daytime) -> None:
    holders = users(dataset, 12)
    twice = holders[0]
    app = create_app(settings)

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                         headers=SCHEDULER_HEADERS) as client:
                plain = [{"user_id": u, "now": daytime, "k": 5} for u in holders]
                alone = [await client.post("/v1/rank", json=b) for b in plain]
                together = await asyncio.gather(*(client.post("/v1/rank", json=b) for b in plain))
                reserve = [{"user_id": u, "now": daytime, "reserve": True} for u in [*holders, twice]]
                reserved = await asyncio.gather(*(client.post("/v1/rank", json=b) for b in reserve))
        return alone, together, reserved

    alone, together, reserved = asyncio.run(scenario())
    coalescer = app.state.coalescer
    assert coalescer.groups < coalescer.requests, "concurrent requests were not ranked together"
    assert [r.content for r in together] == [r.content for r in alone]
    bodies = [response.json() for response in reserved]
    assert [body["user_id"] for body in bodies] == [*holders, twice]
    # The cardholder asked for twice: one reservation, then the daily cap blocks the second request.
    pair = [body for body in bodies if body["user_id"] == twice]
    assert sum(body["push_id"] is not None for body in pair) == 1
    assert all(body["push_id"] for body in bodies if body["user_id"] != twice and body["caps"]["allowed"])
