"""The API docs work on a network that reaches no CDN: every asset comes from the server itself."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_server(api, page: str) -> None:
    response = api.get(page)
    assert response.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
    assert assets, "the page should reference its script and style"
    for url in assets:
        assert url.startswith("/"), f"{page} loads {url} from outside the server"
        assert api.get(url).status_code == 200, url
    assert "cdn" not in response.text.lower()


def test_openapi_schema_is_served(api) -> None:
    schema = api.get("/openapi.json").json()
    assert "/v1/rank" in schema["paths"] and "/v1/events" in schema["paths"]
