"""graphite-web's time syntax (store/timespec.py): unit cases, and every case read by Debian's
graphite-web 1.1.8's own parseATTime with the same now and zone, which must agree."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import need
from tests.graphite_web import GRAPHITE_WEB, SYSTEM_PYTHON
from webops.statsd.store.timespec import TimeError, parse, window, zone

UTC = ZoneInfo("UTC")
NOW = int(datetime(2026, 12, 4, 15, 37, 42, tzinfo=UTC).timestamp())  # a Friday afternoon
NOW_MS = NOW * 1000
H = 3_600_000
MIDNIGHT = int(datetime(2026, 12, 4, tzinfo=UTC).timestamp()) * 1000


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("now", NOW_MS),
        ("", NOW_MS),
        ("-5min", NOW_MS - 300_000),
        ("now-10min", NOW_MS - 600_000),
        ("-1h", NOW_MS - H),
        ("-2d", NOW_MS - 48 * H),
        ("-1w", NOW_MS - 168 * H),
        ("-1mon", NOW_MS - 30 * 24 * H),
        ("-1y", NOW_MS - 365 * 24 * H),
        ("-1h30min", NOW_MS - 90 * 60_000),
        ("+1h", NOW_MS + H),
        ("midnight", MIDNIGHT),
        ("today", MIDNIGHT),
        ("yesterday", MIDNIGHT - 24 * H),
        ("tomorrow", MIDNIGHT + 24 * H),
        ("noon", MIDNIGHT + 12 * H),
        ("teatime", MIDNIGHT + 16 * H),
        ("noon yesterday", MIDNIGHT - 12 * H),
        ("midnight+1h", MIDNIGHT + H),
        ("9am", MIDNIGHT + 9 * H),
        ("3pm", MIDNIGHT + 15 * H),
        ("12:30_20261201", MIDNIGHT - 3 * 24 * H + 12 * H + 1_800_000),
        ("20261201", MIDNIGHT - 3 * 24 * H),
        ("12/01/26", MIDNIGHT - 3 * 24 * H),
        ("1795467600", 1_795_467_600_000),
        ("monday", MIDNIGHT - 4 * 24 * H),  # the last Monday
        ("dec1", MIDNIGHT - 3 * 24 * H),
    ],
)
def test_graphite_web_times(text: str, want: int) -> None:
    assert parse(text, NOW_MS, UTC) == want


def test_times_of_day_are_in_the_zone_asked() -> None:
    paris = zone("Europe/Paris")
    assert parse("midnight", NOW_MS, paris) == MIDNIGHT - H  # Paris is UTC+1 in December
    assert parse("-1h", NOW_MS, paris) == NOW_MS - H  # relative times have no zone


def test_relative_times_keep_the_milliseconds() -> None:
    assert parse("-30s", NOW_MS + 250, UTC) == NOW_MS + 250 - 30_000
    assert parse("midnight", NOW_MS + 250, UTC) == MIDNIGHT


@pytest.mark.parametrize(
    "bad", ["someday", "-1fortnight", "12:00_2026", "-100ms", "-h", "9" * 40, "25:00", "13/45/26", "feb"]
)
def test_what_is_not_a_time_says_so(bad: str) -> None:
    with pytest.raises(TimeError):
        parse(bad, NOW_MS, UTC)


def test_unknown_zones_are_refused() -> None:
    for bad in ("Nowhere/Land", "../../etc/passwd", "x" * 5000):
        with pytest.raises(TimeError):
            zone(bad)
    assert zone("") is None


def test_until_before_from_is_swapped_and_an_empty_range_refused() -> None:
    w = window("-5min", "-10min", None, NOW_MS, UTC)
    assert (w.start, w.end) == (NOW_MS - 600_000, NOW_MS - 300_000)
    with pytest.raises(TimeError):
        window("-5min", "-5min", None, NOW_MS, UTC)
    w = window("", "", "1795467600", NOW_MS, UTC)  # now= moves every relative time
    assert (w.start, w.end, w.now) == (1_795_467_600_000 - 24 * H, 1_795_467_600_000, 1_795_467_600_000)


GRAPHITE_WEB_READS = """
import calendar, json, sys, pytz
from datetime import datetime
from django.conf import settings
settings.configure(TIME_ZONE="UTC")
from graphite.render.attime import parseATTime
epoch = lambda dt: calendar.timegm(dt.astimezone(pytz.utc).timetuple())
now, texts = json.load(sys.stdin)
out = {}
for zone_name in ("UTC", "Europe/Paris", "America/New_York"):
    tz = pytz.timezone(zone_name)
    for text in texts:
        try:
            at = datetime.fromtimestamp(now, tz)
            out[zone_name + " " + text] = int(epoch(parseATTime(text, tz, now=at)))
        except Exception as e:
            out[zone_name + " " + text] = None
print(json.dumps(out))
"""

DIFFERENTIAL = [
    "now", "-5min", "now-10min", "-1h", "-2d", "-1w", "-1mon", "-1y", "-1h30min", "+3d",
    "midnight", "noon", "teatime", "today", "yesterday", "tomorrow", "noon yesterday",
    "midnight+1h", "noon-2d", "9am", "11pm", "12:30_20261201", "00:00_20260329", "20261201",
    "12/01/26", "03/29/2026", "1795467600", "monday", "sunday", "dec1", "march29", "6:15pm",
    "teatime tomorrow", "someday", "-1fortnight", "-100ms", "25:00", "-1h-1h", "-5", "now-",
]  # fmt: skip


def test_graphite_web_reads_every_time_as_webops_does() -> None:
    """graphite-web's own parser, asked with the same now in three zones (one crosses DST in
    March): where it answers, the same instant; where it refuses, webops refuses too."""
    need(GRAPHITE_WEB.exists(), "graphite-web (apt-get install graphite-web)")
    ran = subprocess.run(
        [SYSTEM_PYTHON, "-c", GRAPHITE_WEB_READS],
        input=json.dumps([NOW, DIFFERENTIAL]),
        capture_output=True,
        text=True,
        check=True,
        cwd="/usr/lib/python3/dist-packages",
    )
    theirs = json.loads(ran.stdout)
    compared = 0
    for key, want in theirs.items():
        zone_name, text = key.split(" ", 1)
        if want is None:
            with pytest.raises(TimeError):
                parse(text, NOW_MS, ZoneInfo(zone_name))
            continue
        assert parse(text, NOW_MS, ZoneInfo(zone_name)) == want * 1000, key
        compared += 1
    assert compared >= 3 * (len(DIFFERENTIAL) - 7)  # what graphite-web reads, it reads here too
