"""Fuzz every operation of the OpenAPI schema: never a 5xx, every 4xx says what is wrong."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from serving_support import ADMIN_HEADERS

pytestmark = [pytest.mark.redis, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 25
seen_statuses: Counter[tuple[str, int]] = Counter()


def check(case) -> None:
    response = case.call(headers=ADMIN_HEADERS)
    seen_statuses[(case.operation.path, response.status_code)] += 1
    case.validate_response(response, checks=[not_a_server_error])
    content_type = response.headers.get("content-type") or [""]
    json_body = content_type[0].startswith("application/json")
    if 200 <= response.status_code < 300 and json_body:
        case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict), body
        assert isinstance(body.get("message"), str) and len(body["message"]) > 10, body


def test_no_server_errors_and_clear_client_errors(settings, published, redis_client) -> None:
    from serving.app import create_app

    app = create_app(settings)
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        # The studio's operations (simulations over a configured world) are fuzzed by its own tests.
        operations = [op for op in (result.ok() for result in schema.get_all_operations())
                      if "studio" not in op.path]
        assert len(operations) >= 12
        for operation in operations:
            run = settings_for_fuzz(given(case=operation.as_strategy())(check))
            run()
    # The fuzzer reached the real work, not only validation errors.
    assert seen_statuses[("/v1/rank", 200)] > 0, dict(seen_statuses)
    assert seen_statuses[("/v1/rank", 422)] > 0, dict(seen_statuses)


def settings_for_fuzz(test):
    return settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))(test)
