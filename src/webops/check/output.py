"""What a check prints, by the Monitoring Plugins guidelines, pure: the status line
`SERVICE STATE - text | perfdata`, then, when there is more to say, long output (one line per
series not OK) and more perfdata after a second `|`, and the exit code of the state.

Performance data is `'label'=value[UOM];[warn];[crit];[min];[max]`, space-separated. A label is
always quoted here (a Graphite name may hold anything); a quote inside is doubled, as the
guidelines say, and `=`, `|` and control characters, which would end the label or the line, become
`_`. A value that is not a number (no data, an infinite change) is `U`, the guidelines' "could not
be determined".

Everything is bounded: a wildcard may match thousands of series, and NRPE (v2) keeps only the
first 1 KiB of what a plugin prints, so the first line is short and carries the verdict (the
state, the worst series, how many are OK); the long output names at most `MAX_LONG` series and
the perfdata covers at most `MAX_PERF_SERIES`, each saying how many were left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SERVICE = "WEBOPS CHECK"
# Monitoring Plugins' max_state_alt: a real problem outranks "cannot say" (one series stale or
# without an earlier window must not hide another's CRITICAL), which outranks OK.
RANK = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}
UOMS = ("", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c")  # the guidelines' units
MAX_TEXT = 200  # characters of the first line's text, before its perfdata
MAX_FIRST_LINE = 1000  # bytes of the whole first line (NRPE v2 cuts at 1024)
MAX_LONG = 50  # series named in the long output
MAX_PERF_SERIES = 100  # series with perfdata


def worst(*states: int) -> int:
    """The state that wins, by `RANK` (not the largest number: UNKNOWN is 3)."""
    return max(states, key=RANK.__getitem__)


@dataclass(frozen=True)
class Perf:
    label: str
    value: float | None  # None: no value (`U`)
    uom: str = ""
    warn: str = ""
    crit: str = ""

    def __str__(self) -> str:
        label = "".join("_" if c in "=|" or not c.isprintable() else c for c in self.label).replace("'", "''")
        value = (
            f"{number(self.value)}{self.uom}" if self.value is not None and math.isfinite(self.value) else "U"
        )
        fields = [f"'{label}'={value}", self.warn, self.crit, "", ""]
        return ";".join(fields).rstrip(";")


@dataclass
class Verdict:
    """One series' result: its state and the words for the status line."""

    name: str
    state: int
    text: str
    perf: list[Perf] = field(default_factory=list)


def number(value: float) -> str:
    """A plain decimal (no exponent, which some graphers refuse), as short as the value allows."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def status(verdicts: list[Verdict], summary: str = "") -> tuple[int, str]:
    """The exit code (the worst series decides) and the output: the first line names the state,
    the series not OK (worst first) as far as `MAX_TEXT` allows and "N of M series OK"; the long
    output, when some problem did not fit there, lists them; the perfdata follows."""
    if not verdicts:
        return UNKNOWN, line(UNKNOWN, summary or "no series")
    state = worst(*(v.state for v in verdicts))
    problems = sorted((v for v in verdicts if v.state != OK), key=lambda v: -RANK[v.state])
    oks = [v for v in verdicts if v.state == OK]
    tally = f"{len(oks)} of {len(verdicts)} series OK"
    named = problems or oks
    head = f"{summary}: " if summary else ""
    parts: list[str] = []
    for v in named[:3]:
        part = _clean(f"{v.name} {v.text}")
        if len(head) + len("; ".join([*parts, part, tally])) > MAX_TEXT:
            if not parts:  # the worst series is named, cut short
                room = MAX_TEXT - len(head) - len(tally) - 5
                parts.append(part[: max(room, 20)] + "...")
            break
        parts.append(part)
    text = head + "; ".join([*parts, tally])
    long = [] if len(parts) >= len(problems) else [_clean(f"{v.name} {v.text}") for v in problems]
    if len(long) > MAX_LONG:
        long = [*long[:MAX_LONG], f"and {len(long) - MAX_LONG} more series not OK"]
    with_perf = [v for v in verdicts if v.perf]
    if len(with_perf) > MAX_PERF_SERIES:
        kept = {id(v) for v in [*problems, *oks][:MAX_PERF_SERIES] if v.perf}
        left = sum(1 for v in with_perf if id(v) not in kept)
        with_perf = [v for v in with_perf if id(v) in kept]
        long.append(f"perfdata left out for {left} series")
    perf = [str(p) for v in with_perf for p in v.perf]
    first = line(state, text)
    n = 0
    size = len((first + " | ").encode())
    while n < len(perf) and size + len(perf[n].encode()) + 1 <= MAX_FIRST_LINE:
        size += len(perf[n].encode()) + 1
        n += 1
    out = [line(state, text, " ".join(perf[:n]))]
    rest = perf[n:]
    if rest and not long:
        long.append(f"perfdata of {len(with_perf)} series")
    if rest:
        long[-1] += " | " + rest[0]
        long.extend(rest[1:])
    return state, "\n".join([*out, *long])


def _clean(text: str) -> str:
    """One line of text: no `|` (it would start perfdata), no line breaks or other controls."""
    return " ".join("".join(c if c.isprintable() else " " for c in text.replace("|", "/")).split())


def line(state: int, text: str, perf: str = "") -> str:
    """`WEBOPS CHECK STATE - text | perfdata`; a `|` in the text would start perfdata, so it is
    replaced (a Graphite target may hold one only in a string argument)."""
    return f"{SERVICE} {NAMES[state]} - {_clean(text)}" + (f" | {perf}" if perf else "")
