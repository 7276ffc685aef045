"""The dashboard in a real headless Chromium (Debian's), driven by Playwright: the page loads,
a series sent over UDP after it loaded appears on its chart, the search adds charts, the
daemon's own health shows on top, and nothing is logged to the console as an error."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def page() -> Iterator:
    need(Path(CHROMIUM).exists(), "Debian's chromium (apt-get install chromium)")
    need(importlib.util.find_spec("playwright") is not None, "playwright (the dev extra)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 900})
        finally:
            browser.close()


def test_a_series_sent_after_the_page_loaded_is_charted(start_daemon, page, tmp_path: Path) -> None:
    d = start_daemon(backends=["store"], store={"dir": str(tmp_path / "data")}, flushInterval=500)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    base = f"http://127.0.0.1:{d.http_port}"
    page.goto(f"{base}/?target=stats.gauges.ui.depth&range=-15min")
    page.wait_for_selector('.chart[data-target="stats.gauges.ui.depth"]')
    assert page.get_attribute('.chart[data-target="stats.gauges.ui.depth"]', "data-points") == "0"

    d.send(b"ui.depth:42|g\nui.latency:10|ms\nui.latency:30|ms\nui.clicks:5|c")
    # the page polls at every flush (500 ms here); the chart gets the point from /render
    page.wait_for_function(
        "document.querySelector('.chart[data-target=\"stats.gauges.ui.depth\"]').dataset.points > 0",
        timeout=30_000,
    )
    page.wait_for_function("document.getElementById('h-health').textContent === 'up'", timeout=30_000)
    assert "store" in page.text_content("#h-backends")

    # search: a branch drills down, a leaf adds a chart; a timer's leaf charts its percentiles
    page.fill("#search", "stats.timers.ui")
    page.click("#nodes li.branch:text-is('stats.timers.ui')")
    page.click("#nodes li.branch:text-is('stats.timers.ui.latency')")
    page.click("#nodes li.leaf:text-is('stats.timers.ui.latency.mean')")
    timers = '.chart[data-target="stats.timers.ui.latency.{mean,median,upper*}"]'
    page.wait_for_function(f"document.querySelector('{timers}')?.dataset.series >= 3", timeout=30_000)
    assert "stats.timers.ui.latency" in page.evaluate(
        "decodeURIComponent(location.search)"
    )  # a link to share

    # a counter's count is charted as its rate; a range keeps the charts and lands in the address
    page.fill("#search", "stats_counts.ui")
    page.click("#nodes li.branch:text-is('stats_counts.ui')")
    page.click("#nodes li.leaf:text-is('stats_counts.ui.clicks')")
    page.wait_for_selector('.chart[data-target="stats.ui.clicks"]')
    page.select_option("#range", "-6h")
    assert "range=-6h" in page.evaluate("location.search")
    page.wait_for_function(
        "document.querySelector('.chart[data-target=\"stats.gauges.ui.depth\"]').dataset.points > 0",
        timeout=30_000,
    )

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert errors == []
    shutil.rmtree(tmp_path / "data")
