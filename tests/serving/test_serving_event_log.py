"""The durable event log: one file per UTC day, read back in order; torn lines are reported."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from serving.event_log import EventLog, EventLogError, push_log_frame


def test_one_file_per_day_read_in_order(tmp_path) -> None:
    late_evening = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    log = EventLog(tmp_path / "events" / "push_log.jsonl", clock=lambda: late_evening)
    log.append([{"event_id": "today", "type": "opened"}])
    assert [path.name for path in log.files()] == ["push_log.2026-03-01.jsonl"]
    log.close()
    older = log.file_for(date(2026, 1, 2))
    older.write_text('{"event_id": "old-1"}\n{"event_id": "old-2"}\n')
    assert log.file_for(date(2026, 1, 2)).name == "push_log.2026-01-02.jsonl"
    assert [event["event_id"] for event in log.read()] == ["old-1", "old-2", "today"]


def test_torn_line_names_file_and_line(tmp_path) -> None:
    log = EventLog(tmp_path / "push_log.jsonl")
    log.file_for(date(2026, 1, 3)).write_text('{"event_id": "a"}\n{"event_id": "b"\n')
    with pytest.raises(EventLogError, match=r"push_log\.2026-01-03\.jsonl:2"):
        list(log.read())


def test_push_log_rows_from_events() -> None:
    events = [
        {"event_id": "1", "type": "sent", "user_id": "u1", "push_id": "p1", "content_id": "c1",
         "ts": "2026-01-01T10:00:00+00:00"},
        {"event_id": "2", "type": "sent", "user_id": "u1", "push_id": "p2", "content_id": "c2",
         "ts": "2026-01-02T10:00:00+00:00"},
        {"event_id": "3", "type": "clicked", "user_id": "u1", "push_id": "p1",
         "ts": "2026-01-01T12:00:00+00:00"},
        {"event_id": "4", "type": "opened", "user_id": "u1", "push_id": "p1",
         "ts": "2026-01-01T11:00:00+00:00"},
        {"event_id": "5", "type": "muted", "user_id": "u1", "ts": "2026-01-02T11:00:00+00:00"},
        {"event_id": "6", "type": "failed", "user_id": "u2", "push_id": "p3",
         "ts": "2026-01-02T11:00:00+00:00"},
        {"event_id": "1", "type": "sent", "user_id": "u1", "push_id": "p9", "content_id": "c9",
         "ts": "2026-01-03T10:00:00+00:00"},
    ]
    frame = push_log_frame(iter(events)).set_index("push_id")
    assert list(frame.index) == ["p1", "p2"]
    assert str(frame.loc["p1", "opened_ts"]) == "2026-01-01 11:00:00+00:00"
    assert frame.loc["p2", "opened_ts"] is None or str(frame.loc["p2", "opened_ts"]) == "NaT"
    assert frame["muted"].tolist() == [False, True]
