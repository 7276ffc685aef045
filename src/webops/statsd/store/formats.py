"""How /render and /metrics/find write their answers, one entry per `format` as graphite-web
names it (render/views.py, metrics/views.py), each written as graphite-web writes it, byte for
byte where the differential test can see it:

- json: [{"target", "tags", "datapoints": [[value, epoch seconds], ...]}], null for NaN and
  Infinity (which are not JSON; graphite-web writes 1e9999 for Infinity, which no parser keeps);
  the only format maxDataPoints consolidates and noNullPoints thins, as in graphite-web;
- csv: name, time in the request's zone, value, with Excel's \\r\\n; empty where JSON has null
  (graphite-web writes inf and nan, which no spreadsheet reads as numbers);
- raw: `name,start,end,step|v1,v2,...` with Python's repr of each value (None for a gap);
- pickle: the list of dicts graphite-web's RemoteReader reads (name, start, end, step, values,
  pathExpression, ...), of plain types only, so a graphite-web with CLUSTER_SERVERS pointing here
  federates this daemon with its SafeUnpickler.

jsonp wraps a JSON answer in `callback(...)`: the callback must be a JavaScript identifier path
(graphite-web writes any text there, which makes its answer a script anyone can inject into).

Times are epoch milliseconds in a Series (the store keeps sub-second steps); answers say epoch
seconds, as an int for a whole second and a float to the millisecond otherwise.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import pickle
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from .. import hotpath
from .functions import MS, Series, Value

PICKLE_PROTOCOL = 4  # graphite-web writes -1 (its Python's highest); 4 is read by every Python 3 it runs on
# /render's JSON points written natively (native/src/jsonfmt.rs) unless the extension is not
# built or WEBOPS_STATSD_HOTPATH=python (the suite runs once with each)
NATIVE_JSON = hotpath._native.json_points if hotpath.default() == "native" else None
JSONP = re.compile(r"[A-Za-z_$][\w$]{0,99}(?:\.[A-Za-z_$][\w$]{0,99}){0,9}")


@dataclass(frozen=True)
class Options:
    """What a writer needs beyond the series: the zone for local times (None: the system's)."""

    tz: tzinfo | None = None
    # graphite-web's noNullPoints (json): points without a value left out, and a series left
    # with none; Infinity too, which JSON cannot carry (graphite-web writes 1e9999 for it)
    no_null_points: bool = False


@dataclass(frozen=True)
class Format:
    """`write` makes a text answer a series at a time (the HTTP endpoint sends each part as it
    is made), pickle's at once; it looks at no budget: what it writes was counted and checked
    before (graphite_api.render_parts)."""

    content_type: str
    write: Callable[[Sequence[Series], Options], Iterator[str] | bytes]
    consolidates: bool = False  # maxDataPoints applies (json only, as in graphite-web)
    wraps: bool = False  # jsonp applies


def finite(v: Value) -> Value:
    """None for what JSON cannot carry (Infinity, NaN: scale() by 1e308, a sum past 1.8e308)."""
    return v if v is None or math.isfinite(v) else None


def seconds(ms: int) -> int | float:
    """Epoch seconds as graphite-web writes them: an int for a whole second, else a float to the
    millisecond (ms / 1000 is the float nearest the decimal, so it prints as 1795467600.25)."""
    return ms // MS if ms % MS == 0 else ms / MS


def _number(v: Value) -> str:
    """A value as json.dumps writes it, null for what JSON cannot carry (finite())."""
    if v.__class__ is float:
        return repr(v) if v - v == 0 else "null"  # inf - inf and nan - nan are nan
    return "null" if v is None else json.dumps(finite(v))


def _json_series(s: Series, options: Options) -> str | None:
    """One series' entry, as json.dumps writes {"target", "tags", "datapoints"}, the points
    written as text directly (no list per point: a 1,000-series day is 1.4 million of them),
    natively where the extension is built (half a render's time was repr of the floats);
    None for a series noNullPoints leaves out."""
    points = None
    if NATIVE_JSON is not None and s.values.__class__ is list:
        points = NATIVE_JSON(s.values, s.start, s.step, options.no_null_points)
    if points is None:
        points = datapoints(s, options.no_null_points)
    if options.no_null_points and not points:
        return None
    name = json.dumps(s.name)
    return f'{{"target": {name}, "tags": {{"name": {name}}}, "datapoints": [{points}]}}'


def datapoints(s: Series, no_null_points: bool) -> str:
    """The reference for the native writer (_native.json_points, held to this by property
    tests): `[value, seconds]` joined by `, `, noNullPoints leaving out the points without a
    value."""
    if s.start % MS == 0 and s.step % MS == 0:  # whole seconds: no division per point
        stamps: Sequence[object] = range(
            s.start // MS, s.start // MS + len(s.values) * (s.step // MS), s.step // MS
        )
    else:
        stamps = [json.dumps(seconds(s.start + i * s.step)) for i in range(len(s.values))]
    # gaps and finite floats (nearly every point) inline, anything else through _number
    points = [
        f"[null, {t}]"
        if v is None
        else f"[{v!r}, {t}]"
        if v.__class__ is float and v - v == 0
        else f"[{_number(v)}, {t}]"
        for v, t in zip(s.values, stamps, strict=True)
    ]
    if no_null_points:
        points = [p for p in points if not p.startswith("[null")]
    return ", ".join(points)


def json_chunks(series: Sequence[Series], options: Options) -> Iterator[str]:
    """/render's JSON a series at a time: what is held is one series' text, not every point's
    list and dict until the end."""
    yield "["
    first = True
    for s in series:
        entry = _json_series(s, options)
        if entry is not None:
            yield entry if first else ", " + entry
            first = False
    yield "]"


def local_time(ms: int, tz: tzinfo | None) -> str:
    """A time as graphite-web's CSV writes it, with the milliseconds where they are not 0."""
    text = datetime.fromtimestamp(ms // MS, tz).strftime("%Y-%m-%d %H:%M:%S")
    return text if ms % MS == 0 else f"{text}.{ms % MS:03d}"


def _csv(series: Sequence[Series], options: Options) -> Iterator[str]:
    for s in series:
        buf = io.StringIO()
        writer = csv.writer(buf, dialect="excel")
        for i, v in enumerate(s.values):
            value = "" if finite(v) is None else v
            writer.writerow([s.name, local_time(s.start + i * s.step, options.tz), value])
        yield buf.getvalue()


def _raw(series: Sequence[Series], options: Options) -> Iterator[str]:
    for s in series:
        head = f"{s.name},{seconds(s.start)},{seconds(s.end)},{seconds(s.step)}"
        yield f"{head}|{','.join(map(repr, s.values))}\n"


def info(s: Series) -> dict[str, object]:
    """graphite-web's TimeSeries.getInfo(): what its RemoteReader takes a remote series from."""
    return {
        "name": s.name,
        "start": seconds(s.start),
        "end": seconds(s.end),
        "step": seconds(s.step),
        "values": list(s.values),
        "pathExpression": s.path_expression,
        "valuesPerPoint": 1,
        "consolidationFunc": "average",
        "xFilesFactor": 0.0,
    }


def _pickle(series: Sequence[Series], options: Options) -> bytes:
    return pickle.dumps([info(s) for s in series], protocol=PICKLE_PROTOCOL)


RENDER: dict[str, Format] = {
    "json": Format("application/json", json_chunks, consolidates=True, wraps=True),
    "csv": Format("text/csv", _csv),
    "raw": Format("text/plain", _raw),
    "pickle": Format("application/pickle", _pickle),
}


# ---------------------------------------------------------------- /metrics/find


@dataclass(frozen=True)
class Node:
    path: str
    leaf: bool


def _treejson(query: str, nodes: Sequence[Node], window: tuple[int, int]) -> str:
    """graphite-web's tree_json: one entry per distinct node name (a wildcard in an earlier node
    matches the same name under many branches), its id the query's parent path and the name,
    branches before leaves, each sorted by name."""
    base = query.rsplit(".", 1)[0] + "." if "." in query else ""
    seen: dict[str, bool] = {}
    for n in sorted(nodes, key=lambda n: (n.path.rsplit(".", 1)[-1], n.leaf)):
        seen.setdefault(n.path.rsplit(".", 1)[-1], n.leaf)
    entries = [
        {
            "text": name,
            "id": base + name,
            "allowChildren": int(not leaf),
            "expandable": int(not leaf),
            "leaf": int(leaf),
        }
        for leaf in (False, True)
        for name, is_leaf in seen.items()
        if is_leaf == leaf
    ]
    return json.dumps(entries)


def _intervals(window: tuple[int, int]) -> list[tuple[int | float, int | float]]:
    """The span a leaf covers, as graphite-web's remote finder reads it: the window asked about
    (every series is kept from its first flush to its retention, which the find does not look up)."""
    return [(seconds(window[0]), seconds(window[1]))]


def _find_json(query: str, nodes: Sequence[Node], window: tuple[int, int]) -> str:
    """graphite-web's json_nodes: every matching path, intervals as {start, end}."""
    return json.dumps(
        [
            {
                "path": n.path,
                "is_leaf": n.leaf,
                **({"intervals": [{"start": a, "end": b} for a, b in _intervals(window)]} if n.leaf else {}),
            }
            for n in nodes
        ]
    )


def _find_pickle(query: str, nodes: Sequence[Node], window: tuple[int, int]) -> bytes:
    """graphite-web's pickle_nodes, intervals as (start, end) pairs: its RemoteFinder turns those
    into its Interval objects (it cannot unpickle another graphite-web's IntervalSet either way)."""
    found = [
        {"path": n.path, "is_leaf": n.leaf, **({"intervals": _intervals(window)} if n.leaf else {})}
        for n in nodes
    ]
    return pickle.dumps(found, protocol=PICKLE_PROTOCOL)


FindWriter = Callable[[str, Sequence[Node], tuple[int, int]], str | bytes]
FIND: dict[str, tuple[str, FindWriter, bool]] = {  # format: content type, writer, jsonp applies
    "treejson": ("application/json", _treejson, True),
    "json": ("application/json", _find_json, True),
    "pickle": ("application/pickle", _find_pickle, False),
}


def jsonp(callback: str, body: str) -> str:
    """`callback(body)`; a callback that is not an identifier path is a ValueError naming it."""
    return "".join(jsonp_parts(callback, [body]))


def jsonp_parts(callback: str, parts: Iterable[str]) -> Iterator[str]:
    """`callback(` the parts `)`, the callback looked at now (before any part is sent)."""
    if not JSONP.fullmatch(callback):
        raise ValueError(
            f"jsonp {callback[:40]!r}: a JavaScript function name (letters, digits, _, $ and dots)"
        )
    return itertools.chain((f"{callback}(",), parts, (")",))
