"""One check from plan to verdict: which targets to fetch over which windows (from the options),
then, per series, the value, the thresholds, freshness, change and Holt-Winters bands. The
fetching is graphite.py's, the maths evaluate.py's, the words output.py's."""

from __future__ import annotations

import argparse
import time
import urllib.parse
from dataclasses import dataclass

from ..common.config import ConfigError
from ..common.settings import Resolved
from . import evaluate, graphite, output, paths
from .graphite import Series, Unknown
from .output import CRITICAL, OK, UNKNOWN, WARNING, Perf, Verdict, worst
from .ranges import Range


@dataclass
class Check:
    url: str
    target: str
    start: int
    end: int
    agg: str
    stale: int
    warning: Range | None = None
    critical: Range | None = None
    uom: str = ""
    compare: int = 0
    change_warning: tuple[Range, bool] | None = None
    change_critical: tuple[Range, bool] | None = None
    holt_winters: bool = False
    delta: float = 3.0
    bootstrap: int = 7 * 86400
    seasonality: int = 86400
    hw_source: str = "auto"
    hw_state: int = CRITICAL
    until_now: bool = True  # the window ends now (its words: "in the last 300s")

    @classmethod
    def plan(cls, args: argparse.Namespace, settings: Resolved) -> Check:
        config = paths.read_config(settings["statsd_config"])
        target = args.target
        given = [n for n in (args.target, args.counter, args.timer, args.gauge, args.set_) if n is not None]
        if not given:
            raise ConfigError("one of -t/--target, --counter, --timer, --gauge or --set is required")
        if not given[0].strip():
            raise ConfigError("the target or metric name is empty")
        for kind, name in (
            ("counter", args.counter),
            ("timer", args.timer),
            ("gauge", args.gauge),
            ("set", args.set_),
        ):
            if name is not None:
                target = paths.resolve(kind, name, args.stat, config)
        if args.target is not None and args.stat is not None:
            raise ConfigError("--stat goes with --counter, --timer, --gauge or --set, not --target")
        now = int(time.time())
        start, end = graphite.when(settings["from"], now), graphite.when(args.until, now)
        if start < 0:
            raise ConfigError(f"--from {settings['from']} is before 1970 (epoch 0)")
        if start >= end:
            raise ConfigError(f"--from {settings['from']} is not before --until {args.until}")
        if args.compare and not (args.change_warning or args.change_critical):
            raise ConfigError("--compare needs --change-warning and/or --change-critical")
        if (args.change_warning or args.change_critical) and not args.compare:
            raise ConfigError("--change-warning/--change-critical need --compare OFFSET (-1d, -1w)")
        if args.compare and graphite.offset(args.compare) >= 0:
            raise ConfigError(
                f"--compare {args.compare} is not in the past: give an earlier offset such as -1d or -1w"
            )
        if args.compare and start + graphite.offset(args.compare) < 0:
            raise ConfigError(f"--compare {args.compare} reaches before 1970 (epoch 0)")
        if args.holt_winters:
            for flag, value in (("--bootstrap", args.bootstrap), ("--seasonality", args.seasonality)):
                if graphite.offset(value) == 0:
                    raise ConfigError(f"{flag} {value} is empty: give a length such as 1d")
            if start - abs(graphite.offset(args.bootstrap)) < 0:
                raise ConfigError(f"--bootstrap {args.bootstrap} reaches before 1970 (epoch 0)")
        if args.uom not in output.UOMS:
            raise ConfigError(
                f"--uom {args.uom!r} is not a unit the plugin guidelines know: "
                + ", ".join(u for u in output.UOMS if u)
            )
        if not (args.warning or args.critical or args.compare or args.holt_winters):
            raise ConfigError(
                "nothing to check: give -w/-c, --compare with a change threshold, or --holt-winters"
            )
        url = settings["url"] or paths.url_of(config)
        try:
            parts = urllib.parse.urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"--url {url!r} is not an http(s) URL (http://graphite:8080)")
        return cls(
            url=url,
            target=target,
            start=start,
            end=end,
            agg=settings["agg"],
            stale=CRITICAL if settings["stale"] == "critical" else UNKNOWN,
            warning=args.warning,
            critical=args.critical,
            uom=args.uom,
            compare=abs(graphite.offset(args.compare)) if args.compare else 0,
            change_warning=args.change_warning,
            change_critical=args.change_critical,
            holt_winters=args.holt_winters,
            delta=args.delta,
            bootstrap=abs(graphite.offset(args.bootstrap)),
            seasonality=abs(graphite.offset(args.seasonality)),
            hw_source=args.hw_source,
            hw_state=CRITICAL if args.hw_state == "critical" else WARNING,
            until_now=args.until.strip() == "now",
        )

    def run(self, deadline: float) -> tuple[int, str]:
        """(exit status, output); never raises: what the API does and a bug alike end as UNKNOWN."""
        try:
            return self._run(deadline)
        except Unknown as e:
            return UNKNOWN, output.line(UNKNOWN, str(e))
        except Exception as e:  # a bug must still end as a plugin's UNKNOWN, never a traceback
            return UNKNOWN, output.line(UNKNOWN, f"webops check failed: {type(e).__name__}: {e}")

    def _fetch(self, target: str, start: int, end: int, deadline: float) -> list[Series]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unknown(f"{self.url}: no answer within --timeout")
        return graphite.fetch(self.url, target, start, end, left)

    def _run(self, deadline: float) -> tuple[int, str]:
        if self.holt_winters:
            current, bands = self._holt_winters(deadline)
        else:
            current, bands = self._fetch(self.target, self.start, self.end, deadline), {}
        before: dict[str, Series] | None = None
        if self.compare:
            earlier = self._fetch(self.target, self.start - self.compare, self.end - self.compare, deadline)
            before = {s.name: s for s in earlier}
        length = f"{self.end - self.start}s"
        window = (
            f"in the last {length}"
            if self.until_now
            else f"in the {length} window ending {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.end))}"
        )
        if not current:
            reason = f"{self.target}: no series (nothing matches, or no data in the window)"
            return self.stale, output.line(self.stale, reason)
        verdicts = [self._judge(s, before, bands.get(s.name), window) for s in current]
        return output.status(verdicts)

    def _judge(
        self,
        series: Series,
        before: dict[str, Series] | None,
        band: tuple[list, list] | None,
        window: str,
    ) -> Verdict:
        value = evaluate.aggregate(series.values, self.agg)
        if value is None:
            perf = [Perf(series.name, None, "", str(self.warning or ""), str(self.critical or ""))]
            return Verdict(series.name, self.stale, f"has no data {window} (stale)", perf)
        state, notes = OK, []
        for r, s in ((self.critical, CRITICAL), (self.warning, WARNING)):
            if r is not None and r.alerts(value):
                state = worst(state, s)
                notes.append(f"{output.NAMES[s].lower()} {r}")
                break
        perf = [Perf(series.name, value, self.uom, str(self.warning or ""), str(self.critical or ""))]
        text = f"{self.agg} {output.number(value)}{self.uom}"
        if before is not None:
            state, more = self._judge_change(series.name, value, before.get(series.name), state, perf)
            notes.extend(more)
        if self.holt_winters:
            state, more = self._judge_band(series.name, value, band, state, perf)
            notes.extend(more)
        if notes:
            text += " (" + ", ".join(notes) + ")"
        return Verdict(series.name, state, text, perf)

    def _judge_change(
        self, name: str, value: float, earlier: Series | None, state: int, perf: list[Perf]
    ) -> tuple[int, list[str]]:
        then = evaluate.aggregate(earlier.values, self.agg) if earlier else None
        ago = f"{self.compare}s"
        if then is None:
            return worst(state, UNKNOWN), [f"no data {ago} earlier to compare with"]
        notes = [f"was {output.number(then)}{self.uom} {ago} earlier"]
        for threshold, s in ((self.change_critical, CRITICAL), (self.change_warning, WARNING)):
            if threshold is None:
                continue
            r, relative = threshold
            moved = evaluate.change(value, then, relative)
            if r.alerts(moved):
                state = worst(state, s)
                notes.append(
                    f"change {output.number(moved)}{'%' if relative else ''}: {output.NAMES[s].lower()} {r}"
                )
                break
        for relative in sorted({t[1] for t in (self.change_warning, self.change_critical) if t}):
            moved = evaluate.change(value, then, relative)
            warn = (
                self.change_warning[0].text
                if self.change_warning and self.change_warning[1] == relative
                else ""
            )
            crit = (
                self.change_critical[0].text
                if self.change_critical and self.change_critical[1] == relative
                else ""
            )
            perf.append(Perf(f"{name} change", moved, "%" if relative else self.uom, warn, crit))
        return state, notes

    def _judge_band(
        self, name: str, value: float, band: tuple[list, list] | None, state: int, perf: list[Perf]
    ) -> tuple[int, list[str]]:
        if band is None:
            return worst(state, UNKNOWN), ["no Holt-Winters bands"]
        low, high = (evaluate.aggregate(b, self.agg) for b in band)
        if low is None or high is None:
            return worst(state, UNKNOWN), ["no Holt-Winters bands in the window (too little history)"]
        r = Range(low, high, False, f"{output.number(low)}:{output.number(high)}")
        perf.append(Perf(f"{name} band", value, self.uom, "", r.text))
        if r.alerts(value):
            return worst(state, self.hw_state), [f"outside the Holt-Winters band {r.text}"]
        return state, [f"within the Holt-Winters band {r.text}"]

    def _holt_winters(self, deadline: float) -> tuple[list[Series], dict[str, tuple[list, list]]]:
        """The window's series and, by name, their (lower, upper) bands: from the server's
        holtWintersConfidenceBands, or computed here from the history before the window."""
        current = self._fetch(self.target, self.start, self.end, deadline)
        if self.hw_source in ("auto", "server"):
            expr = (
                f"holtWintersConfidenceBands({self.target},{output.number(self.delta)},"
                f"'{self.bootstrap}s','{self.seasonality}s')"
            )
            try:
                got = self._fetch(expr, self.start, self.end, deadline)
            except Unknown as e:
                if self.hw_source == "server" or " 400 " not in str(e):
                    raise
            else:
                return current, _pair(got)
        history = self._fetch(self.target, self.start - self.bootstrap, self.end, deadline)
        bands = {}
        for s in history:
            if s.step <= 0:
                continue
            if self.seasonality < s.step:
                raise Unknown(
                    f"--seasonality {self.seasonality}s is shorter than {s.name}'s step of {s.step}s"
                )
            bands[s.name] = evaluate.confidence_bands(
                s.values, s.step, self.bootstrap, self.delta, self.seasonality
            )
        return current, bands


def _pair(series: list[Series]) -> dict[str, tuple[list, list]]:
    lower = {
        s.name[len("holtWintersConfidenceLower(") : -1]: s.values
        for s in series
        if s.name.startswith("holtWintersConfidenceLower(")
    }
    upper = {
        s.name[len("holtWintersConfidenceUpper(") : -1]: s.values
        for s in series
        if s.name.startswith("holtWintersConfidenceUpper(")
    }
    return {name: (lower[name], upper[name]) for name in lower if name in upper}
