"""The dashboard in a real headless Chromium (Debian's), driven by Playwright: the page loads,
a series sent over UDP after it loaded appears on its chart, the search adds charts, the
daemon's own health shows on top, and nothing is logged to the console as an error."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need, wait_until

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


# --- issue 33: a dashboard an SRE opens first -----------------------------------------------
# Each test drives the page against a real daemon with real UDP traffic, saves a screenshot to
# tmp_path and checks, item by item, what a human would check on that screenshot (CHECKS).

FLUSH_MS = 500
# Chromium itself logs every non-2xx answer and refused connection to the console ("Failed to
# load resource: ..."), whatever the page does with it: those are expected where a test makes a
# request fail on purpose; anything else (the page's own errors, uncaught exceptions) fails.
NETWORK = "Failed to load resource"


class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, page, daemon) -> None:
        self.page = page
        self.base = f"http://127.0.0.1:{daemon.http_port}"
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def open(self, query: str = "") -> None:
        self.page.goto(f"{self.base}/{query}")

    def unexpected(self, *expected: str) -> list[str]:
        """Errors other than Chromium's own network lines for the failures named in `expected`."""
        return [e for e in self.errors if not (e.startswith(NETWORK) and any(x in e for x in expected))]

    def shot(self, tmp_path: Path, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return path

    def wait(self, js: str, timeout: float = 30_000) -> None:
        self.page.wait_for_function(js, timeout=timeout)

    def ticks(self) -> int:
        return int(self.page.evaluate("document.body.dataset.ticks || '0'"))


def store_daemon(start_daemon, tmp_path: Path, **config):
    return start_daemon(
        backends=["store"], store={"dir": str(tmp_path / "data")}, flushInterval=FLUSH_MS, **config
    )


def chart(target: str) -> str:
    return f'.chart[data-target="{target}"]'


def colour_pixels(page, selector: str, rgb: tuple[int, int, int]) -> int:
    """Pixels of a chart's canvas within a few levels of `rgb`: what the eye sees drawn."""
    return page.evaluate(
        """([sel, rgb]) => {
            const c = document.querySelector(sel + ' canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                if (d[i + 3] > 200 && Math.abs(d[i] - rgb[0]) < 40 && Math.abs(d[i + 1] - rgb[1]) < 40
                    && Math.abs(d[i + 2] - rgb[2]) < 40) n++;
            return n;
        }""",
        [selector, list(rgb)],
    )


BLUE = (0x2F, 0x6F, 0xDD)  # the first series' colour


def test_the_first_view_needs_no_typing(start_daemon, page, tmp_path: Path) -> None:
    """CHECKS on first-view.png, the page opened at / with nothing in the address:
    1. five health charts: intake, bad lines, drops, flush time, store lag, each a drawn canvas;
    2. the intake chart's current value is above 0 (traffic is flowing), bad lines are flagged;
    3. the busiest list's first row is the hottest key, hot.key, with its rate per second;
    4. clicking that row adds its chart (the counter's rate, stats.hot.key), which gets points."""
    d = store_daemon(start_daemon, tmp_path)
    w = Watched(page, d)
    w.open()

    def traffic() -> bool:
        d.send(b"\n".join([b"hot.key:1|c"] * 40 + [b"cold.key:1|c", b"lat:5|ms", b"oops"]))
        return page.evaluate("document.querySelector('#busiest tr')?.dataset.target") == "stats.hot.key"

    wait_until(traffic, timeout=30, what="hot.key first in the busiest list")
    w.wait("document.querySelectorAll('.health-chart canvas').length === 5")
    titles = page.eval_on_selector_all(".health-chart h4", "hs => hs.map(h => h.firstChild.textContent)")
    w.wait("parseFloat(document.querySelector('.health-chart[data-key=intake] .now').textContent) > 0")
    w.wait("document.querySelector('.health-chart[data-key=bad_lines]').classList.contains('bad')")
    w.shot(tmp_path, "first-view")

    assert [t.split(" (")[0] for t in titles] == [
        "intake",
        "bad lines",
        "drops",
        "flush time",
        "store lag",
    ]  # 1
    assert "/s" in page.text_content("#busiest tr")  # 3
    assert page.text_content("#busiest tr td.key") == "hot.key"
    page.click("#busiest tr >> nth=0")  # 4
    w.wait(f"document.querySelector('{chart('stats.hot.key')}')?.dataset.points > 0")
    assert "target=stats.hot.key" in page.evaluate("location.search")
    assert w.unexpected() == []


def test_a_drag_zoom_survives_refreshes_and_the_address_restores_it(
    start_daemon, page, tmp_path: Path
) -> None:
    """CHECKS on zoomed.png and restored.png:
    1. after a drag, the chart's x axis spans the dragged window, and the address has from/until;
    2. two refreshes (flushes) later the x axis still spans that window;
    3. the address opened in a new page shows the same window, the same target and theme."""
    d = store_daemon(start_daemon, tmp_path)
    w = Watched(page, d)
    target = "stats.gauges.zoom.depth"
    w.open(f"?target={target}&range=-15min&theme=dark")

    def traffic() -> bool:
        d.send(b"zoom.depth:%d|g" % (w.ticks() % 7))
        return int(page.get_attribute(chart(target), "data-points") or 0) > 3

    wait_until(traffic, timeout=30, what="a few points on the chart")
    box = page.locator(f"{chart(target)} .u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.6, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, y, steps=5)
    page.mouse.up()
    w.wait("location.search.includes('from=') && location.search.includes('until=')")
    zoom = page.evaluate("window.dashboard.state.zoom")
    plot = f"window.dashboard.charts.get('{target}').plot"
    scale = f"[{plot}.scales.x.min, {plot}.scales.x.max]"
    assert page.evaluate(scale) == zoom  # 1
    w.shot(tmp_path, "zoomed")
    seen = w.ticks()
    wait_until(lambda: w.ticks() >= seen + 2, timeout=30, what="two refreshes")
    assert page.evaluate(scale) == zoom  # 2
    assert page.evaluate("window.dashboard.state.zoom") == zoom

    url = page.url
    again = Watched(page.context.browser.new_page(viewport={"width": 1200, "height": 900}), d)
    again.page.goto(url)
    again.wait(f"window.dashboard?.charts.get('{target}')?.plot != null")
    restored = again.page.evaluate("window.dashboard.state.zoom")
    assert restored == [int(zoom[0]), math.ceil(zoom[1])]  # 3 (the address keeps whole seconds)
    assert again.page.evaluate(scale) == restored
    assert again.page.evaluate("document.documentElement.dataset.theme") == "dark"
    again.shot(tmp_path, "restored")
    assert w.unexpected() == [] and again.unexpected() == []


def test_errors_are_said_in_the_chart_box(start_daemon, page, tmp_path: Path) -> None:
    """CHECKS on errors.png:
    1. a target the API refuses (400) shows the API's own message in its chart's box;
    2. a 10,000-character target gets an answer in its box too, and its box stays inside the page;
    3. a good chart beside them is drawn; nothing but Chromium's line for each 400 is logged."""
    d = store_daemon(start_daemon, tmp_path)
    w = Watched(page, d)
    bad = "noSuchFunction(stats.gauges.err.x)"
    status, message = d.http("/render?target=" + urllib.parse.quote(bad))
    assert status == 400
    long = "stats.gauges." + ".".join(["n"] * 4_994)
    assert len(long) == 10_000
    d.send(b"err.x:3|g")
    w.open(f"?target=stats.gauges.err.x&range=-15min&target={urllib.parse.quote(bad)}")
    page.evaluate(f"addChart({json.dumps(long)})")
    w.wait(f"document.querySelector('{chart(bad)} .error')?.hidden === false")
    w.wait(f"document.querySelector('{chart(long)} .error')?.hidden === false")
    w.wait(f"document.querySelector('{chart('stats.gauges.err.x')}').dataset.points > 0")
    w.shot(tmp_path, "errors")

    assert message.strip() in page.text_content(f"{chart(bad)} .error")  # 1
    assert page.is_visible(f"{chart(bad)} .error")
    assert page.text_content(f"{chart(long)} .error").strip()  # 2
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.locator(chart(long)).bounding_box()["width"] <= width
    assert colour_pixels(page, chart("stats.gauges.err.x"), BLUE) > 0  # 3
    assert w.unexpected("400") == []


def test_axes_say_units_and_kinds(start_daemon, page, tmp_path: Path) -> None:
    """CHECKS on units.png: the y axis label (and the badge in each chart's title) reads
    timer (ms) for a timer's mean, rate (/s) for a counter's rate, count for its count, gauge for
    a gauge (as is)."""
    d = store_daemon(start_daemon, tmp_path)
    w = Watched(page, d)
    expected = {
        "stats.timers.u.lat.mean": "timer (ms)",
        "stats.u.hits": "rate (/s)",
        "stats_counts.u.hits": "count",
        "stats.gauges.u.depth": "gauge",
    }
    query = "&".join(f"target={t}" for t in expected)

    def traffic() -> bool:
        d.send(b"u.lat:12|ms\nu.hits:3|c\nu.depth:9|g")
        return page.evaluate("[...document.querySelectorAll('.chart')].every(c => c.dataset.points > 0)")

    w.open(f"?{query}&range=-15min")
    wait_until(traffic, timeout=30, what="every chart with points")
    w.shot(tmp_path, "units")
    for target, label in expected.items():
        got = page.evaluate(f"window.dashboard.charts.get('{target}').plot.axes[1].label")
        assert got == label, target
        badge = page.text_content(f"{chart(target)} .unit")
        assert badge.split(" · ")[0] == label.split(" (")[0]
    assert "ms" in page.text_content(f"{chart('stats.timers.u.lat.mean')} .unit")
    assert "/s" in page.text_content(f"{chart('stats.u.hits')} .unit")
    assert w.unexpected() == []


def test_a_wildcard_of_1000_leaves_is_one_chart_with_a_bounded_legend(
    start_daemon, page, tmp_path: Path
) -> None:
    """CHECKS on wildcard.png: one chart for stats.gauges.w.* (1,000 series), its legend 8
    entries and "and 992 more", the legend a few lines high, not 1,000 chips."""
    d = store_daemon(start_daemon, tmp_path)
    lines = [b"w.g%d:%d|g" % (i, i) for i in range(1000)]

    def stored() -> bool:
        for i in range(0, 1000, 50):
            d.send(b"\n".join(lines[i : i + 50]))
        return json.loads(d.http("/metrics/find?query=stats.gauges.w.*")[1]).__len__() == 1000

    wait_until(stored, timeout=60, what="1,000 gauges in the store")
    w = Watched(page, d)
    # 5 min of 500 ms flushes: 600 points a series, 600,000 in all, under http.renderMaxPoints
    w.open("?target=stats.gauges.w.*&range=-5min")
    w.wait(f"document.querySelector('{chart('stats.gauges.w.*')}')?.dataset.series === '8'")
    w.shot(tmp_path, "wildcard")
    assert page.locator(".chart").count() == 1
    entries = page.eval_on_selector_all(f"{chart('stats.gauges.w.*')} .legend li.entry", "l => l.length")
    assert entries == 8
    assert page.text_content(f"{chart('stats.gauges.w.*')} .legend .more") == "and 992 more"
    assert page.locator(f"{chart('stats.gauges.w.*')} .legend").bounding_box()["height"] < 150
    # the top 8 by value: the largest gauges
    top = page.eval_on_selector_all(
        f"{chart('stats.gauges.w.*')} .legend li.entry", "l => l.map(e => e.textContent)"
    )
    assert all(t.startswith("stats.gauges.w.g99") for t in top)
    assert w.unexpected() == []


def test_seven_days_of_new_data_are_drawn(start_daemon, page, tmp_path: Path) -> None:
    """CHECKS on seven-days.png: a gauge sent a few seconds ago, charted over 7 days (the store's
    1 min rollup, consolidated to the chart's width), is drawn: pixels of its colour on the canvas."""
    d = store_daemon(start_daemon, tmp_path)
    w = Watched(page, d)
    target = "stats.gauges.week.depth"
    w.open(f"?target={target}&range=-7d")

    def traffic() -> bool:
        d.send(b"week.depth:5|g")
        return int(page.get_attribute(chart(target), "data-points") or 0) > 0

    wait_until(traffic, timeout=30, what="the 7-day chart's point")
    w.wait(f"document.querySelector('{chart(target)} canvas') !== null")
    w.shot(tmp_path, "seven-days")
    assert colour_pixels(page, chart(target), BLUE) > 10
    assert w.unexpected() == []


def test_light_and_dark_themes(start_daemon, page, tmp_path: Path) -> None:
    """CHECKS on dark.png and light.png: with the system dark, the page is dark (background
    rgb(20, 23, 28)); the toggle makes it light (rgb(246, 247, 249)) and says theme=light in the
    address, which a dark system then opens light."""
    d = store_daemon(start_daemon, tmp_path)
    w = Watched(page, d)
    page.emulate_media(color_scheme="dark")
    w.open("?target=stats.gauges.t.x&range=-15min")
    background = "getComputedStyle(document.body).backgroundColor"
    w.wait(f"{background} === 'rgb(20, 23, 28)'")
    w.wait("document.querySelectorAll('.health-chart canvas').length === 5")
    w.shot(tmp_path, "dark")
    page.click("#theme")
    w.wait(f"{background} === 'rgb(246, 247, 249)'")
    assert "theme=light" in page.evaluate("location.search")
    w.wait("document.querySelectorAll('.health-chart canvas').length === 5")
    w.shot(tmp_path, "light")
    page.goto(page.url)
    w.wait(f"{background} === 'rgb(246, 247, 249)'")
    assert w.unexpected() == []


def test_the_page_says_when_the_daemon_is_down_and_recovers(start_daemon, page, tmp_path: Path) -> None:
    """CHECKS on down.png and back.png: with the daemon stopped, a banner says it does not
    answer and the health reads unreachable; once it is back, the banner is gone and health is up."""
    d = store_daemon(start_daemon, tmp_path)
    w = Watched(page, d)
    w.open("?target=stats.gauges.t.x&range=-15min")
    w.wait("document.getElementById('h-health').textContent === 'up'")
    d.stop()
    w.wait("!document.getElementById('offline').hidden")
    assert "does not answer" in page.text_content("#offline")
    assert page.text_content("#h-health") == "unreachable"
    w.shot(tmp_path, "down")
    start_daemon(**d.config)  # the same ports
    w.wait(
        "document.getElementById('offline').hidden"
        " && document.getElementById('h-health').textContent === 'up'"
    )
    w.shot(tmp_path, "back")
    assert w.unexpected("ERR_CONNECTION_REFUSED") == []
