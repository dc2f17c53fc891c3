"""Push response models published with the ranking model, and the send or hold decision in rank answers."""

from __future__ import annotations

import numpy as np

from serving.pipeline import LiveModel


def test_the_response_model_is_published_with_the_ranking_model(response_bundle, dataset, store) -> None:
    from recsys.publish import publish

    report = publish(response_bundle, dataset, store, model_uri="with-response")
    published = store.load(report.version)
    assert published.manifest["response_model"] is True
    live = LiveModel(published)
    assert live.response is not None
    expected = response_bundle.response
    users = expected.user_rows(expected.user_ids[:5])
    items = expected.item_rows(expected.content_ids[:5])
    hours, recent = np.array([9, 12, 19, 21, 8]), np.array([1, 2, 3, 4, 5])
    assert np.allclose(live.response.open_probability(live.response.user_rows(expected.user_ids[:5]),
                                                      live.response.item_rows(expected.content_ids[:5]),
                                                      hours, recent),
                       expected.open_probability(users, items, hours, recent))


def test_a_publication_without_response_models_still_loads(published, store) -> None:
    live = LiveModel(store.load(published.version))
    assert live.response is None and store.load(published.version).manifest["response_model"] is False
