"""Push ids: random version 4 UUIDs in uuid's hex form, one or a batch at a time."""

from __future__ import annotations

import uuid

from recsys.caps.engine import new_push_id, new_push_ids


def test_push_ids_are_distinct_version_4_uuids_in_hex() -> None:
    ids = new_push_ids(2000) + [new_push_id()]
    assert len(set(ids)) == len(ids)
    for push_id in ids:
        parsed = uuid.UUID(hex=push_id)
        assert parsed.hex == push_id and len(push_id) == 32
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert new_push_ids(0) == []
