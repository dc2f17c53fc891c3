"""End to end in headless Chromium: sign in, change a cap, simulate, apply, see it live, roll back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recsys.embedded_redis import free_port
from tests.serving.serving_support import wait_until_ready
from tests.studio.conftest import ADMIN, ADMIN_HEADERS, SCHEDULER

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path("var/test-artifacts/studio.png")


@pytest.fixture
def server(redis_url: str, key_prefix: str, studio_world_dir: Path, studio_published, tmp_path: Path
           ) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "RECSYS_REDIS_URL": redis_url, "RECSYS_REDIS_PREFIX": key_prefix,
        "RECSYS_HOME": str(tmp_path / "home"), "RECSYS_DATA_DIR": str(studio_world_dir),
        "RECSYS_SCHEDULER_TOKEN": SCHEDULER, "RECSYS_ADMIN_TOKEN": ADMIN,
        "RECSYS_STUDIO_USERS": "300", "RECSYS_STUDIO_DAYS": "10", "RECSYS_RELOAD_INTERVAL_SECONDS": "0.2",
        "RECSYS_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    recsys = Path(sys.executable).with_name("recsys")
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([str(recsys), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process, log.read_text)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium package "
                           "(apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            yield page
        finally:
            browser.close()


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_change_a_cap_simulate_apply_and_roll_back(server: str, browser_page, studio_world_dir: Path) -> None:
    page = browser_page
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.set_default_timeout(60_000)

    page.goto(f"{server}/studio")
    page.fill("#token", ADMIN)
    page.click("#signin")
    page.wait_for_selector("#live-meta:has-text('Revision 1')")
    page.wait_for_selector("#world-meta:has-text('cardholders')")
    page.wait_for_selector("#versions tbody tr")
    # a product owner's words on the page; the engineer's terms only in tooltips
    shown = page.inner_text("body")
    for engineer_term in ("Reservation TTL", "Retention", "limit:", "500 / 1s", "configure",
                          str(studio_world_dir), "bootstrap", "Changes: 14"):
        assert engineer_term not in shown, engineer_term
    for words in ("How long a ranked push waits to be sent", "= 10 minutes", "Keep each cardholder's push "
                  "history for", "= 400 days", "Each campaign sends at most 500 pushes every second",
                  "Pause after pushes left unopened", '"world" data', "set by the system at first start"):
        assert words in shown, words
    assert "Reservation TTL" in page.get_attribute('label:has([data-field="reservation_ttl"])', "title")
    assert str(studio_world_dir) in page.get_attribute("#world-meta", "title")
    assert page.inner_text("#versions tbody tr >> nth=0").split("\t")[-2] == "First version"
    assert page.get_attribute("#sim-users", "placeholder") == "all 300"
    assert page.input_value('[data-field="limits.1.name"]') == "monthly"
    assert page.input_value('[data-field="limits.1.max"]') == "4"
    assert page.is_checked('[data-toggle="quiet_hours"]')
    # the send or hold settings of the live policy, in words; lambda and the rest in tooltips
    assert page.is_checked('[data-field="decision.enabled"]')
    assert page.is_checked('[data-toggle="decision.pacing"]')
    assert page.input_value('[data-field="decision.mute_weight"]') == "10"
    assert page.input_value('[data-field="decision.pacing.margin"]') == "0.2"
    assert page.input_value('[data-field="decision.scheduler_follows_send_at"]') == ""  # learned
    assert page.input_value('[data-field="decision.control_share"]') == "0"
    assert "mute_weight" in page.get_attribute('label:has([data-field="decision.mute_weight"])', "title")
    assert "One mute or unfollow costs as much as this many opens" in shown

    # change a cap: at most 2 marketing pushes a calendar month instead of 4
    page.fill('[data-field="limits.1.max"]', "2")
    page.wait_for_selector("#draft-diff:has-text('monthly limit: at most')")
    page.click("#apply")  # a changed policy under the live version is refused before any request
    page.wait_for_selector("#apply-error:has-text('its own version')")
    page.fill('[data-field="version"]', "2026.12-studio")
    page.fill('[data-field="decision.mute_weight"]', "20")
    page.wait_for_selector("#draft-diff:has-text('a mute costs (opens)')")
    page.select_option('[data-field="decision.scheduler_follows_send_at"]', "false")
    page.wait_for_selector("#draft-diff:has-text('the scheduler sends at the suggested time')")
    page.select_option('[data-field="decision.scheduler_follows_send_at"]', "")  # back to learning it
    page.fill('[data-field="decision.control_share"]', "0.05")
    page.wait_for_selector("#draft-diff:has-text('control share')")

    page.fill("#sim-days", "10")
    page.click("#simulate")
    page.wait_for_selector("#sim-status:has-text('Done')")
    sent = page.locator('#compare tr[data-metric="sent"] td')
    live_sent, draft_sent = number(sent.nth(0).inner_text()), number(sent.nth(1).inner_text())
    mutes = page.locator('#compare tr[data-metric="expected_mutes"] td')
    assert 0 < draft_sent < live_sent
    assert number(mutes.nth(1).inner_text()) < number(mutes.nth(0).inner_text())
    monthly = page.locator('#rules tr[data-rule="limit:monthly"]')
    assert monthly.count() == 1
    assert monthly.locator("th").inner_text() == "Monthly limit (pushes per calendar month)"
    assert monthly.locator("th").get_attribute("title") == "rule limit:monthly"
    assert page.locator("#rules tr").first.inner_text().split("\t")[-1] == "change"
    # "requests blocked" comes with what share of requests and why
    requests_cells = page.locator('#compare tr[data-metric="attempts"] td')
    blocked = page.locator('#compare tr[data-metric="blocked"] td').nth(0).inner_text()
    share = number(blocked.split(" ")[0]) / number(requests_cells.nth(0).inner_text())
    assert blocked.endswith(f"({100 * share:.0f}%)")
    note = page.inner_text("#blocked-note")
    assert f"{requests_cells.nth(0).inner_text()} requests" in note and "Main reasons" in note
    assert "monthly limit (pushes per calendar month)" in note
    # every segment table has a change column per figure
    segment_tables = page.locator("#segments table")
    assert segment_tables.count() == 2
    for index in range(2):
        head = segment_tables.nth(index).locator("tr").first.inner_text().split("\t")
        assert head.count("change") == 3 and head[1] == "Pushes sent: live (rev 1)"
    # every chart is shown at about its natural size on a 1,400 px page, so its text stays readable
    images = page.locator("#charts img")
    assert images.count() == 4
    for index in range(4):
        natural, shown_width = images.nth(index).evaluate(
            "image => image.complete && [image.naturalWidth, image.getBoundingClientRect().width]")
        assert natural >= 1000 and shown_width >= 0.9 * natural, (natural, shown_width)

    # apply: the API's validated, versioned, audited update
    page.fill("#apply-note", "monthly cap 4 -> 2 after simulation")
    page.click("#apply")
    page.wait_for_selector("#apply-status:has-text('Applied: revision 2')")
    page.wait_for_selector("#versions tbody tr:has-text('monthly limit 4 -> 2')")
    changes = page.inner_text("#versions tbody tr >> nth=0").split("\t")[-2]
    assert changes == ("control share 0 -> 0.05; a mute costs (opens) 10 -> 20; monthly limit 4 -> 2; "
                       "version 2026.11-default -> 2026.12-studio")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"studio screenshot: {SCREENSHOT.resolve()}")
    live = httpx.get(f"{server}/v1/policy", headers=ADMIN_HEADERS).json()
    assert live["revision"] == 2 and live["author"] == "admin"
    assert live["policy"]["version"] == "2026.12-studio"
    assert live["policy"]["limits"][1] == {"name": "monthly", "window": "calendar_month", "max": 2}
    assert live["policy"]["decision"] == {"enabled": True, "mute_weight": 20.0, "min_value": 0.0,
                                          "hour_margin": 0.1, "pacing": {"margin": 0.2},
                                          "scheduler_slots": None, "scheduler_follows_send_at": None,
                                          "control_share": 0.05}
    assert live["note"] == "monthly cap 4 -> 2 after simulation"
    history = httpx.get(f"{server}/v1/policy/versions", headers=ADMIN_HEADERS).json()
    assert any(change["path"] == "limits" for change in history["revisions"][0]["diff"])
    page.wait_for_selector("#live-meta:has-text('Revision 2')")

    # roll back to version 1
    page.click("#rollback-1")
    page.wait_for_selector("#versions-status:has-text('Rolled back: revision 3')")
    live = httpx.get(f"{server}/v1/policy", headers=ADMIN_HEADERS).json()
    assert live["revision"] == 3 and live["policy"]["limits"][1]["max"] == 4
    assert page.input_value('[data-field="limits.1.max"]') == "4"

    assert problems == []
    assert all(url.startswith(f"{server}/") or url.startswith("data:") for url in requests), requests


def test_a_scheduler_token_cannot_use_the_studio(server: str, browser_page) -> None:
    page = browser_page
    page.goto(f"{server}/studio")
    page.fill("#token", SCHEDULER)
    page.click("#signin")
    page.wait_for_selector("#login-error:has-text('admin token')")
    assert page.is_hidden("#app")
