"""Policy documents: the shipped default, validation errors naming the field, round trips, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qianmian.cli import app
from recsys.caps.policy import (
    PolicyError,
    default_policy,
    load_policy,
    parse_duration,
    parse_policy,
)


def test_default_policy_is_the_documented_one() -> None:
    policy = default_policy()
    limits = {limit.name: (limit.window, limit.max) for limit in policy.limits}
    assert limits == {"daily": ("calendar_day", 1), "monthly": ("calendar_month", 4)}
    assert (policy.quiet_hours.start, policy.quiet_hours.end) == ("22:00", "08:00")
    assert policy.no_repeat is not None and policy.no_repeat.window is None
    assert policy.default_timezone == "Asia/Shanghai"
    assert policy.transactional.counts_toward_limits is False
    assert policy.fatigue.after_unopened == 3 and policy.fatigue.pause == 14 * 86_400
    assert policy.min_gap == 12 * 3600 and policy.reservation_ttl == 600
    assert policy.mute.pause is None


def test_round_trip_through_dict_json_and_yaml(tmp_path: Path) -> None:
    policy = default_policy()
    assert parse_policy(policy.to_dict()) == policy
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy.to_dict()), encoding="utf-8")
    assert load_policy(path) == policy


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43_200), ("7d", 604_800), ("2w", 1_209_600), (45, 45)],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"limits": [{"name": "d", "window": "weekly", "max": 1}]}, "limits[0].window"),
        ({"limits": [{"name": "d", "window": "rolling", "max": 1}]}, "rolling window needs `duration`"),
        ({"limits": [{"name": "d", "window": "calendar_day", "max": 0}]}, "limits[0].max"),
        (
            {"limits": [{"name": "d", "window": "calendar_day", "max": 1}] * 2},
            "duplicate limit name",
        ),
        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet hours start and end are equal"),
        ({"quiet_hours": {"start": "24:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"min_gap": "soon"}, "min_gap: 'soon' is not a duration"),
        ({"default_timezone": "Asia/Beijing"}, "unknown time zone 'Asia/Beijing'"),
        ({"fatigue": {"after_unopened": 0, "pause": "7d"}}, "fatigue.after_unopened"),
        (
            {
                "campaign_throttle": {
                    "max": 10,
                    "per": "1s",
                    "campaigns": {"bad name": {"max": 1, "per": "1s"}},
                }
            },
            "campaign 'bad name'",
        ),
        ({"reservation_ttl": "2d"}, "reservation_ttl above 1d"),
        ({"retention": "1000000000000d"}, "retention: a duration must be at most 3650d"),
        ({"min_gap": "40d"}, "min_gap: at most 31d, got 40d"),
        ({"fatigue": {"after_unopened": 3, "pause": "400d"}}, "fatigue.pause: at most 366d"),
        ({"mute": {"pause": "5000d"}}, "mute.pause: a duration must be at most 3650d"),
        ({"no_repeat": {"window": "5000d"}}, "no_repeat.window: a duration must be at most 3650d"),
        ({"campaign_throttle": {"max": 5, "per": "2d"}}, "campaign_throttle.per: at most 1d"),
        ({"limits": [{"name": "y", "window": "rolling", "duration": "400d", "max": 9}]},
         "limits[0].duration: at most 366d"),
        ({"limits": [{"name": f"l{i}", "window": "calendar_day", "max": 9} for i in range(31)]},
         "limits: Tuple should have at most 30 items"),
        ({"override_no_limits": "short"}, "override_no_limits"),
        ({"retention": "7d"}, "retention (7d) is shorter than the longest window"),
        ({"limit": []}, "limit: unknown field"),
        ({"version": ""}, "version"),
        ({"decision": {"pacing": {"min_value": 0.02, "days_per_slot": 3}}},
         "decision.pacing: pacing.min_value and pacing.days_per_slot were replaced by pacing.margin"),
        ({"decision": {"pacing": {"margin": -0.1}}}, "decision.pacing.margin"),
        ({"decision": {"control_share": 0.6}}, "decision.control_share: Input should be less than or equal"),
    ],
)
def test_invalid_documents_name_the_field(change: dict, message: str) -> None:
    document = default_policy().to_dict()
    document.update(change)
    with pytest.raises(PolicyError) as caught:
        parse_policy(document, source="p.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("p.yaml: invalid policy")


def test_missing_version_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="version: Field required"):
        parse_policy({"limits": []})
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: [1,\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="must be a mapping"):
        load_policy(listed)


def test_cli_check_policy_and_show_default(tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["caps", "show-default"])
    assert shown.exit_code == 0 and "quiet_hours" in shown.output
    written = tmp_path / "mine.yaml"
    written.write_text(shown.output, encoding="utf-8")
    checked = runner.invoke(app, ["caps", "check-policy", str(written)])
    assert checked.exit_code == 0
    assert "limit monthly: at most 4" in checked.output
    as_json = runner.invoke(app, ["caps", "check-policy", "--json", str(written)])
    assert json.loads(as_json.output) == default_policy().to_dict()
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\nmin_gap: soon\n', encoding="utf-8")
    refused = runner.invoke(app, ["caps", "check-policy", str(bad)])
    assert refused.exit_code == 1
    assert "min_gap" in refused.output


def test_a_policy_capping_no_marketing_needs_a_stated_override() -> None:
    only_promotions = [{"name": "promos", "window": "calendar_day", "max": 1, "kinds": ["promotion"]}]
    for limits in ([], only_promotions):
        policy = parse_policy({"version": "no-caps", "limits": limits})
        with pytest.raises(PolicyError, match="override_no_limits"):
            policy.check_protective()
    allowed = parse_policy({"version": "no-caps", "override_no_limits": "service notices only, ticket 42"})
    allowed.check_protective()
    assert parse_policy(allowed.to_dict()) == allowed
    default_policy().check_protective()
