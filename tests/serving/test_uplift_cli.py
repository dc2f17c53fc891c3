"""`recsys events uplift`: the decision's uplift from the API's event log, and the errors bad input gets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from qianmian.cli import app
from recsys.control import in_control
from serving.event_log import EventLog


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """400 opted-in cardholders and one who opted out; each treated cardholder was sent one push in
    November and opened it, each control cardholder one push, unopened."""
    ids = [f"c{i:04d}" for i in range(400)]
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"user_id": [*ids, "away"], "birth_year": 1985, "gender": "F", "city_tier": 2,
                  "card_tier": "classic", "credit_limit": 30000.0, "opened_at": "2020-01-01",
                  "timezone": "Asia/Shanghai", "push_opt_in": ["true"] * 400 + ["false"]}).to_csv(
        data / "cardholders.csv", index=False)
    log = EventLog(tmp_path / "events" / "push_log.jsonl", clock=lambda: datetime(2026, 11, 30, tzinfo=UTC))
    control = in_control(ids, 0.25)
    events = []
    for i, (user, chosen) in enumerate(zip(ids, control.tolist(), strict=True)):
        events.append({"event_id": f"s{i}", "type": "sent", "user_id": user, "push_id": f"p{i}",
                       "content_id": "offer", "ts": "2026-11-10T02:00:00+00:00"})
        if not chosen:
            events.append({"event_id": f"o{i}", "type": "opened", "user_id": user, "push_id": f"p{i}",
                           "ts": "2026-11-10T02:20:00+00:00"})
    log.append(events)
    log.close()
    return data, log.path, ids


def invoke(*args: object):
    return CliRunner().invoke(app, ["events", "uplift", *map(str, args)])


def test_the_uplift_of_a_month_from_the_event_log(logged) -> None:
    data, log, ids = logged
    result = invoke("--data", data, "--log", log, "--since", "2026-11-01T00:00+08:00",
                    "--until", "2026-12-01T00:00+08:00", "--control-share", "0.25")
    assert result.exit_code == 0, result.output
    control = int(in_control(ids, 0.25).sum())
    lines = result.output.splitlines()
    assert f"| treated (decided) | {400 - control:,} | 1.000 | 1.000 | 0.00 | 1.0000 |" in lines
    assert f"| control (sent whatever the value) | {control:,} | 1.000 | 0.000 | 0.00 | 0.0000 |" in lines
    assert "treated / control: no ratio" in result.output
    before = invoke("--data", data, "--log", log, "--since", "2026-10-01", "--until", "2026-11-01",
                    "--control-share", "0.25")
    assert before.exit_code == 0 and "| 0.000 | 0.000 | 0.00 | 0.0000 |" in before.output


def test_bad_input_is_named(logged, tmp_path: Path) -> None:
    data, log, _ = logged
    common = ("--data", data, "--log", log, "--until", "2026-12-01")
    wrong_time = invoke(*common, "--since", "early November", "--control-share", "0.25")
    assert wrong_time.exit_code == 2
    assert "--since 'early November' is not an ISO 8601 time" in wrong_time.output
    no_share = invoke(*common, "--since", "2026-11-01", "--control-share", "0")
    assert no_share.exit_code == 1 and "nothing to measure against" in no_share.output
    no_log = invoke("--data", data, "--log", tmp_path / "none" / "log.jsonl", "--since", "2026-11-01",
                    "--until", "2026-12-01", "--control-share", "0.25")
    assert no_log.exit_code == 1 and "no event log files" in no_log.output
    no_data = invoke("--data", tmp_path / "absent", "--log", log, "--since", "2026-11-01",
                     "--until", "2026-12-01", "--control-share", "0.25")
    assert no_data.exit_code == 1 and "cardholders" in no_data.output
