"""What a check prints, by the Monitoring Plugins guidelines, pure: one status line,
`SERVICE STATE - text | perfdata`, and the exit code of the state.

Performance data is `'label'=value[UOM];[warn];[crit];[min];[max]`, space-separated. A label is
always quoted here (a Graphite name may hold anything); a quote inside is doubled, as the
guidelines say, and `=`, which a label cannot hold, becomes `_`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SERVICE = "WEBOPS CHECK"


@dataclass(frozen=True)
class Perf:
    label: str
    value: float
    uom: str = ""
    warn: str = ""
    crit: str = ""

    def __str__(self) -> str:
        label = self.label.replace("=", "_").replace("'", "''")
        fields = [f"'{label}'={number(self.value)}{self.uom}", self.warn, self.crit, "", ""]
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
    """The exit code (the worst series decides) and the one line: the state, then each series
    not OK (worst first, each named), then how many are OK, then every series' perfdata."""
    if not verdicts:
        return UNKNOWN, line(UNKNOWN, summary or "no series")
    worst = max(v.state for v in verdicts)
    problems = sorted((v for v in verdicts if v.state != OK), key=lambda v: -v.state)
    oks = [v for v in verdicts if v.state == OK]
    parts = [f"{v.name} {v.text}" for v in problems]
    if oks and problems:
        parts.append(f"{len(oks)} of {len(verdicts)} series OK")
    elif oks:
        parts.extend(f"{v.name} {v.text}" for v in oks[:3])
        if len(oks) > 3:
            parts.append(f"and {len(oks) - 3} more series OK")
    text = "; ".join(parts)
    if summary:
        text = f"{summary}: {text}"
    perf = " ".join(str(p) for v in verdicts for p in v.perf)
    return worst, line(worst, text, perf)


def line(state: int, text: str, perf: str = "") -> str:
    """`WEBOPS CHECK STATE - text | perfdata`; a `|` in the text would start perfdata, so it is
    replaced (a Graphite target may hold one only in a string argument)."""
    text = " ".join(text.replace("|", "/").split())
    return f"{SERVICE} {NAMES[state]} - {text}" + (f" | {perf}" if perf else "")
