"""The comparison charts are readable on a 1,400 px page and name the rules in plain words."""

from __future__ import annotations

import io

import pytest
from matplotlib.text import Text
from PIL import Image

from recsys.caps.policy import default_policy
from recsys.caps.words import rule_words, rule_words_for
from simulation.charts import CHARTS, chart_pngs
from simulation.runner import ScheduleConfig, simulate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(small_world, strict_policy):
    return simulate(small_world.sample(200, seed=0), [default_policy(), strict_policy],
                    ScheduleConfig(days=6, seed=1), labels=["live (rev 1)", "draft"])


def visible_texts(figure) -> list[Text]:
    figure.canvas.draw()
    return [text for text in figure.findobj(Text) if text.get_visible() and text.get_text().strip()]


def test_every_chart_fits_a_1400px_page_with_text_of_at_least_11_points(report) -> None:
    for name, build in CHARTS.items():
        figure = build(report)
        width_px = figure.get_figwidth() * figure.dpi
        assert 1000 <= width_px <= 1300, name  # shown one per row at about its natural size
        sizes = [text.get_fontsize() for text in visible_texts(figure)]
        assert sizes and min(sizes) >= 11, (name, min(sizes))
    for name, png in chart_pngs(report).items():
        assert Image.open(io.BytesIO(png)).width >= 1000, name


def test_the_blocked_chart_names_rules_in_plain_words(report) -> None:
    texts = {text.get_text() for text in visible_texts(CHARTS["blocked_by_rule"](report))}
    assert "Monthly limit (pushes per calendar month)" in texts
    assert not any("limit:" in text or "min_gap" in text for text in texts)


def test_rule_words_name_each_rule_without_the_ids(strict_policy) -> None:
    assert rule_words("limit:daily", default_policy()) == "Daily limit (pushes per calendar day)"
    assert rule_words("min_gap") == "Too soon after the last push"
    assert rule_words("limit:weekend_promos") == "Weekend promos limit"  # a limit no policy defines
    words = rule_words_for(["limit:monthly", "fatigue", "combined"], [default_policy(), strict_policy])
    assert words == {"limit:monthly": "Monthly limit (pushes per calendar month)",
                     "fatigue": "Paused after pushes left unopened", "combined": "Several rules together"}
