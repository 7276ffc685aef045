"""graphite-web's time syntax for from, until and now (its render/attime.py), as a pure function:
the text, the request's now and a zone in, epoch milliseconds out.

A time is a reference and an offset. The reference is `now` (or nothing), epoch seconds, or a
time of day (HH:MM, 9am, noon, midnight, teatime) on a day (today, yesterday, tomorrow,
YYYYMMDD, MM/DD/YY, a month name and day, a weekday name); the offset, after the first + or -,
is numbers with units (-1h30min, +2d). Spaces, underscores and commas are dropped first, so
`noon yesterday`, `12:00_20261204` and `midnight+1h` all read as graphite-web reads them.

Offsets are absolute seconds added to the reference's instant, as graphite-web's pytz arithmetic
does (midnight+24h across a DST change is not the next midnight). Units are graphite-web's, by
prefix (s, min, h, d, w, mon, y; a month is 30 days, a year 365), plus a bare `m` for minutes,
which graphite-web refuses and Grafana's own translation never sends: an extension, not a clash.
Everything is milliseconds because the store keeps sub-second steps: `-30s` keeps now's
milliseconds, a reference such as midnight has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MS = 1000
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# graphite-web's getUnitString, in its order (a prefix test: `min` before `mon`), in seconds;
# months and years as the 30 and 365 days it counts them as
UNIT_PREFIXES = [
    ("s", 1),
    ("min", 60),
    ("h", 3600),
    ("d", 86400),
    ("w", 604800),
    ("mon", 2592000),
    ("y", 31536000),
]
DAYS = {"today": 0, "yesterday": -1, "tomorrow": 1}
HOURS = {"noon": 12, "midnight": 0, "teatime": 16}
MAX_DIGITS = 15  # epoch seconds and offsets: past this no date exists (and int() of 5,000 digits fails)


class TimeError(ValueError):
    """A time graphite-web's syntax does not have: a 400 with this one line."""


@dataclass(frozen=True)
class Window:
    """A render's times, in epoch milliseconds: from before until, as graphite-web orders them."""

    start: int
    end: int
    now: int


def zone(name: str | None) -> tzinfo | None:
    """An IANA zone by name (zoneinfo); None (no tz asked) is the system's local time. An unknown
    name is refused: graphite-web ignores it silently, and a chart drawn in the wrong zone with
    no word said is worse than a 400."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: "../etc/passwd" and other non-keys
        raise TimeError(f"tz {name[:60]!r}: not a time zone name (e.g. UTC, Europe/Paris)") from None


def parse(text: str, now_ms: int, tz: tzinfo | None = None) -> int:
    """`text` (graphite-web's from/until/now syntax) as epoch milliseconds; `now_ms` is what now
    and every relative time count from, `tz` the zone of times of day and dates (None: local)."""
    s = text.strip().lower().replace("_", "").replace(",", "").replace(" ", "")
    if s.isdigit() and not _is_yyyymmdd(s):
        if len(s) > MAX_DIGITS:
            raise TimeError(f"{text[:40]!r}: epoch seconds of at most {MAX_DIGITS} digits")
        return int(s) * MS
    ref, sign, offset = _split(s)
    base = _reference(ref, now_ms, tz, text)
    return base + (_offset(offset, text) * sign if offset else 0)


def window(
    params_from: str, params_until: str, params_now: str | None, now_ms: int, tz: tzinfo | None
) -> Window:
    """graphite-web's render window: now (the `now` parameter, or the clock), until (default
    now), from (default -1d), swapped when until is before from (graphite-web answers that, as
    a 200); the same instant twice is refused, as graphite-web refuses it."""
    now = parse(params_now, now_ms, tz) if params_now else now_ms
    until = parse(params_until, now, tz) if params_until else now
    since = parse(params_from, now, tz) if params_from else now - 86400 * MS
    if since == until:
        raise TimeError("from and until are the same instant: an empty time range")
    return Window(min(since, until), max(since, until), now)


def _is_yyyymmdd(s: str) -> bool:
    """graphite-web's test for 8 digits that are a date, not epoch seconds."""
    return len(s) == 8 and int(s[:4]) > 1900 and int(s[4:6]) < 13 and int(s[6:]) < 32


def _split(s: str) -> tuple[str, int, str]:
    """Reference and offset at the first + (else the first -), as graphite-web splits them."""
    for mark, sign in (("+", 1), ("-", -1)):
        if mark in s:
            ref, offset = s.split(mark, 1)
            return ref, sign, offset
    return s, 1, ""


def _offset(text: str, original: str) -> int:
    """-1h30min: each number with its unit, the sign applying to all, in milliseconds."""
    if not re.fullmatch(r"(?:\d+[a-z]+)+", text):  # -1h-1h, -5, -h: graphite-web refuses them too
        raise TimeError(f"{original[:40]!r}: expected numbers with units after the sign (e.g. -1h30min)")
    total = 0
    for number, unit in re.findall(r"(\d+)([a-z]+)", text):
        if len(number) > MAX_DIGITS:
            raise TimeError(f"{original[:40]!r}: numbers of at most {MAX_DIGITS} digits (e.g. -1h)")
        seconds = 60 if unit == "m" else next((n for p, n in UNIT_PREFIXES if unit.startswith(p)), None)
        if seconds is None:
            raise TimeError(f"{original[:40]!r}: unknown unit {unit[:20]!r} (s, min, h, d, w, mon, y)")
        total += int(number) * seconds * MS
    return total


def _reference(ref: str, now_ms: int, tz: tzinfo | None, original: str) -> int:
    """graphite-web's parseTimeReference: a time of day on a day, in `tz`, as epoch ms."""
    if ref in ("", "now"):
        return now_ms
    now = datetime.fromtimestamp(now_ms // MS, tz)
    hour, minute, rest = _time_of_day(ref, original)
    try:
        day = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if rest in DAYS:
            day += timedelta(days=DAYS[rest])
        elif rest.count("/") == 2:  # MM/DD/YY or MM/DD/YYYY
            m, d, y = (int(x) for x in rest.split("/"))
            y += 1900 if y < 1900 else 0
            y += 100 if y < 1970 else 0
            day = datetime(y, m, d, hour, minute, tzinfo=tz)
        elif len(rest) == 8 and rest.isdigit():  # YYYYMMDD
            day = datetime(int(rest[:4]), int(rest[4:6]), int(rest[6:]), hour, minute, tzinfo=tz)
        elif rest[:3] in MONTHS:  # jan5, december25
            m2 = re.search(r"\d{1,2}$", rest)
            if not m2:
                raise TimeError(f"{original[:40]!r}: a day of the month after the month's name")
            day = datetime(now.year, MONTHS.index(rest[:3]) + 1, int(m2[0]), hour, minute, tzinfo=tz)
        elif rest[:3] in WEEKDAYS:  # the last such weekday, today included
            back = (WEEKDAYS.index(day.strftime("%a").lower()[:3]) - WEEKDAYS.index(rest[:3])) % 7
            day -= timedelta(days=back)
        elif rest:
            raise TimeError(
                f"{original[:40]!r}: expected now, -1h, epoch seconds, midnight, noon yesterday, "
                "HH:MM_YYYYMMDD, YYYYMMDD or MM/DD/YY"
            )
    except (ValueError, OverflowError) as e:  # month 13, day 32, year 0
        if isinstance(e, TimeError):
            raise
        raise TimeError(f"{original[:40]!r}: {e}") from None
    # the wall-clock time in tz (naive: the system's local time), DST resolved as graphite-web's
    # localize() resolves it (the earlier of two)
    return int(day.timestamp()) * MS


def _time_of_day(ref: str, original: str) -> tuple[int, int, str]:
    """HH:MM[am|pm], Xam, Xpm, noon, midnight, teatime at the front of `ref`; the rest after."""
    hour = minute = 0
    i = ref.find(":")
    try:
        if 0 < i < 3:
            hour, minute, ref = int(ref[:i]), int(ref[i + 1 : i + 3]), ref[i + 3 :]
            if ref[:2] == "am":
                ref = ref[2:]
            elif ref[:2] == "pm":
                hour, ref = (hour + 12) % 24, ref[2:]
        for mark, extra in (("am", 0), ("pm", 12)):
            i = ref.find(mark)
            if 0 < i < 3:
                hour, ref = (int(ref[:i]) + extra) % 24, ref[i + 2 :]
    except ValueError:
        raise TimeError(f"{original[:40]!r}: expected a time of day such as 12:30 or 9am") from None
    for word, h in HOURS.items():
        if ref.startswith(word):
            hour, minute, ref = h, 0, ref[len(word) :]
            break
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise TimeError(f"{original[:40]!r}: {hour}:{minute:02d} is not a time of day")
    return hour, minute, ref
