"""Graphite's HTTP API on the store, answered as graphite-web 1.1 answers it, for dashboards that
speak Graphite (Grafana's Graphite data source at graphiteVersion 1.1) and for a graphite-web
that federates this daemon (CLUSTER_SERVERS): /render, /metrics/find, /metrics/expand,
/metrics/index.json, /functions, /tags/*, /events/get_data and /version.

Targets are path expressions with Graphite's wildcards, inside the render functions of
functions/; a function that is not there is refused with a 400 that names it. A render runs on
a Budget (functions/core.py): past its points or series it is a 422 naming the key to raise. Times
are read by timespec.py (graphite-web's syntax, `tz`), answers written by formats.py (json, csv,
raw, pickle, jsonp).

Times are integer epoch milliseconds from the request's from/until on (the store keeps sub-second
steps); the answer says them in epoch seconds as graphite-web does, to the millisecond where a
stamp is not a whole second.

The tag endpoints (/tags, its autoComplete and findSeries) and seriesByTag answer over the
store's tagged names (`req.rate;env=prod`) as graphite-web's tag database does (store/tags.py);
a store without tagged names answers as that database does when empty (`[]`, its 400s)."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import tzinfo

from ..http import Answer, Reply, Request
from . import catalog, formats, tags, timespec
from .db import Store
from .functions import CONSOLIDATE, MS, Budget, Call, Refused, Series, evaluate, parse, paths
from .glob import GlobError

GRAPHITE_VERSION = "1.1.8"  # the graphite-web whose answers these are (the differential test's)


class ApiError(ValueError):
    """A request that cannot be answered: a 400 with this one line."""


def parse_time(text: str, now_ms: int, tz: tzinfo | None = None) -> int:
    """graphite-web's time syntax (store/timespec.py) as epoch milliseconds, as `now_ms` is."""
    try:
        return timespec.parse(text, now_ms, tz)
    except timespec.TimeError as e:
        raise ApiError(str(e)) from None


def consolidate(series: Series, max_points: int, time_range: int) -> Series:
    """graphite-web's maxDataPoints, exactly: groups of ceil(points / max) averaged, the start
    nudged onto the group grid (so refreshes do not jitter) and one value fewer than the nudge
    dropped from the front, as its render view does. `time_range` in milliseconds, as the
    series' start and step are: for whole seconds, graphite-web's arithmetic times 1000."""
    if max_points < 1:
        return series
    values, start, step = list(series.values), series.start, series.step
    if max_points == 1:
        per = max(len(values), 1)
    else:
        points = time_range / step
        if max_points >= points:
            return series
        per = math.ceil(points / max_points)
        span = per * step
        nudge = span + start % step - start % span
        start += nudge
        del values[: max(nudge // step - 1, 0)]
    merge = CONSOLIDATE[series.consolidate_func]  # average unless consolidateBy said otherwise
    out = [merge(values[i : i + per]) for i in range(0, len(values), per)]
    stamps = len(range(start, series.end + 1, step * per))
    return replace(series, start=start, step=step * per, values=out[:stamps])


def fetch(
    store: Store, targets: Sequence[str], start_ms: int, end_ms: int, now_ms: int, budget: Budget
) -> list[Series]:
    """The targets' series; every time in epoch milliseconds, as the store's fetch takes and
    answers them.

    Each distinct (path, window) is read once per request: sumSeries(x,x,x,...) repeats a path
    ten thousand times in a 250 kB form, and reading each copy again pinned a render thread for
    seconds. The series every path of every target names are counted against the budget before
    any is read (a render past renderMaxSeries is refused before the work, not after most of
    it), each distinct path once; a repeat costs its points again (the function walks them), not
    a read. The series handed out again are the same objects: functions never change a Series,
    they make new ones (dataclasses.replace)."""
    read: dict[tuple[str, int, int], list[Series]] = {}
    counted: dict[str, list[str]] = {}  # path -> the names it matches, charged up front

    def by_path(path: str, earlier: int, shift: int = 0) -> list[Series]:
        """`earlier` ms more before the start, the whole window `shift` ms back (timeShift)."""
        path = path.strip()
        key = (path, earlier, shift)
        if key in read:
            budget.charge(points=sum(len(s.values) for s in read[key]))
            return list(read[key])
        if (earlier, shift) == (0, 0) and path in counted:
            names = counted[path]
        else:  # read again further back or shifted (movingAverage, timeShift): counted again
            names = named(path)
            budget.charge(series=len(names))  # before reading any: stats.* may name 500,000
        budget.reads += len(names)
        got = store.fetch_many(
            names, start_ms - earlier - shift, end_ms - shift, now_ms, lambda n: budget.charge(points=n)
        )
        out = [Series(name, f.start, f.step, f.values, path) for name, f in got.items()]
        read[key] = out
        return list(out)

    def named(path: str) -> list[str]:
        """A path's names: its wildcards' matches, or for seriesByTag('tag=value', ...) (the
        whole call, as graphite-web's evaluator hands it to its store) the tagged names."""
        if path.startswith("seriesByTag("):
            call = parse(path)
            exprs = [str(a) for a in call.args] if isinstance(call, Call) else []
            return tags.find_series(store.names(), exprs, budget.deadline)
        return store.match(path)

    try:
        with store.interruptible(budget.expired):
            parsed = [parse(target) for target in targets]
            for path in dict.fromkeys(p.strip() for node in parsed for p in paths(node)):
                counted[path] = store.match(path)
                budget.charge(series=len(counted[path]))
            window = (start_ms, end_ms)
            return [s for node in parsed for s in evaluate(node, by_path, budget, window)]
    except RecursionError:  # scale(scale(scale(... thousands deep: an answer, not a crash
        raise ApiError("a target nested too deeply") from None
    except GlobError as e:  # braces that stand for too many paths
        raise ApiError(f"a path's wildcard: {e}") from None
    except sqlite3.OperationalError:  # interrupted at the deadline: say that, not the query
        budget.check()
        raise


def render(store: Store, request: Request, now: float | None = None, budget: Budget | None = None) -> Reply:
    """/render's answer whole (render_parts' parts joined)."""
    status, content_type, body = render_parts(store, request, now, budget)
    return status, content_type, body if isinstance(body, str | bytes) else "".join(body)


def render_parts(
    store: Store, request: Request, now: float | None = None, budget: Budget | None = None
) -> Answer:
    """/render's answer, its text (json, jsonp, csv, raw) as parts to send as they are made, a
    series at a time: a 1,000-series day is 40 MB of JSON, which was held whole, and again as
    bytes, until the client took the last byte.

    Everything that can fail or be refused is done before the first part: the targets read and
    evaluated, the budget charged (renderMaxSeries, renderMaxPoints), the deadline looked at,
    maxDataPoints applied, the jsonp callback checked; so a 400, 422 or 504 is an answer of its
    own, as in graphite-web (which computes everything before it sends), never the end of a
    200 already begun. What is left, the writing, looks at no deadline: it is bounded by the
    points already counted, and the endpoint sends it under http.bodyTimeout.

    `now` in epoch seconds (a float to the millisecond), the clock's by default; the request's
    own `now` (graphite-web's, which its remote reader sends) counts from it."""
    now_ms = time.time_ns() // 1_000_000 if now is None else round(now * MS)
    budget = budget or Budget()
    try:
        tz = timespec.zone(request.get("tz"))
        span = timespec.window(
            request.get("from"), request.get("until"), request.get("now") or None, now_ms, tz
        )
        name = request.get("format", "json") or "json"
        fmt = formats.RENDER.get(name)
        if fmt is None:
            raise ApiError(f"format {name[:20]!r}: one of {', '.join(formats.RENDER)}")
        callback = request.get("jsonp") if fmt.wraps else ""
        try:
            max_points = int(request.get("maxDataPoints", "0") or "0") if fmt.consolidates else 0
        except ValueError:
            raise ApiError("maxDataPoints: expected a whole number") from None
        targets = request.params.get("target", []) or request.params.get("target[]", [])
        fetched = fetch(store, targets, span.start, span.end, span.now, budget)
        # the range in whole seconds, as graphite-web counts it (its now has no milliseconds)
        time_range = (span.end // MS - span.start // MS) * MS
        series = [consolidate(s, max_points, time_range) for s in budget.each(fetched)]
        options = formats.Options(tz, no_null_points=fmt.consolidates and request.has("noNullPoints"))
        body = fmt.write(series, options)
        if callback and not isinstance(body, bytes):
            return 200, "text/javascript", formats.jsonp_parts(callback, body)
    except Refused as e:
        return 422, "text/plain", f"{e}\n"
    except ValueError as e:  # ApiError, TargetError, TimeError, a jsonp callback that is not a name
        return 400, "text/plain", f"{e}\n"
    return 200, fmt.content_type, body


def _json(request: Request, data: object) -> Reply:
    """graphite-web's JSON answers, wrapped in the jsonp callback when one is asked for."""
    body = json.dumps(data)
    if callback := request.get("jsonp"):
        try:
            return 200, "text/javascript", formats.jsonp(callback, body)
        except ValueError as e:
            return 400, "text/plain", f"{e}\n"
    return 200, "application/json", body


def _window(request: Request, now_ms: int) -> tuple[int, int]:
    """A find's from/until (graphite-web's RemoteFinder sends them as epoch seconds), for the
    intervals of its pickle and json answers; the last day when not given."""
    tz = timespec.zone(request.get("tz"))
    until, since = request.get("until"), request.get("from")
    end = parse_time(until, now_ms, tz) if until and until != "-1" else now_ms
    start = parse_time(since, now_ms, tz) if since and since != "-1" else end - 86400 * MS
    return min(start, end), max(start, end)


def find_nodes(store: Store, request: Request, now: float | None = None) -> Reply:
    """graphite-web's /metrics/find: treejson (what Grafana's query editor lists, a node name
    once however many branches a wildcard crosses), json, or pickle (what a federating
    graphite-web's RemoteFinder asks for)."""
    query = request.get("query")
    if not query:
        return 400, "text/plain", "query is required (a path with wildcards: stats.*)\n"
    name = request.get("format", "treejson") or "treejson"
    if name not in formats.FIND:
        return 400, "text/plain", f"format {name[:20]!r}: one of {', '.join(formats.FIND)}\n"
    content_type, write, wraps = formats.FIND[name]
    now_ms = time.time_ns() // 1_000_000 if now is None else round(now * MS)
    leaves_only = request.get("leavesOnly", "0") not in ("", "0")
    try:
        window = _window(request, now_ms)
        nodes = [formats.Node(p, leaf) for p, leaf in store.find(query) if leaf or not leaves_only]
    except GlobError as e:
        return 400, "text/plain", f"query: {e}\n"
    except ValueError as e:  # a from/until/tz that is not a time
        return 400, "text/plain", f"{e}\n"
    body = write(query, nodes, window)
    if wraps and (callback := request.get("jsonp")):
        try:
            return 200, "text/javascript", formats.jsonp(callback, str(body))
        except ValueError as e:
            return 400, "text/plain", f"{e}\n"
    return 200, content_type, body


def expand(store: Store, request: Request, budget: Budget | None = None) -> Reply:
    """graphite-web's /metrics/expand: the paths each query names (every node, or only leaves
    with leavesOnly=1), merged and sorted, or per query with groupByExpr=1. Each query walks
    every name: the deadline is looked at between them (a form may carry thousands)."""
    budget = budget or Budget()
    queries = request.params.get("query", [])
    if not queries:
        return 400, "text/plain", "query is required (one or more paths with wildcards)\n"
    leaves_only = request.get("leavesOnly", "0") not in ("", "0")
    try:
        found = {
            q: sorted({p for p, leaf in store.find(q) if leaf or not leaves_only})
            for q in budget.each(queries)
        }
    except GlobError as e:
        return 400, "text/plain", f"query: {e}\n"
    grouped = request.get("groupByExpr", "0") not in ("", "0")
    results: object = found if grouped else sorted({p for ps in found.values() for p in ps})
    return _json(request, {"results": results})


def index(store: Store, request: Request) -> Reply:
    """graphite-web's /metrics/index.json: every series name, sorted."""
    return _json(request, sorted(store.names()))


def functions_list(request: Request) -> Reply:
    """graphite-web's /functions (and ?grouped=1, ?group=Combine): what this store evaluates."""
    grouped = request.get("grouped").lower() in ("1", "true")
    return _json(request, catalog.catalog(request.get("group") or None, grouped))


def version(request: Request) -> Reply:
    """The graphite-web version whose API this one follows: Grafana reads it as a semver."""
    return 200, "text/html; charset=utf-8", GRAPHITE_VERSION


def _exprs(request: Request) -> list[str]:
    """The tag expressions, as graphite-web reads them: expr=..., or expr[]=... (jQuery's)."""
    return request.params.get("expr", []) or request.params.get("expr[]", [])


def _tag_answer(request: Request, answer: Callable[[], object]) -> Reply:
    """A tag endpoint's answer, or graphite-web's JSON 400 for an expression, regex or limit
    it refuses."""
    try:
        return _json(request, answer())
    except tags.TagError as e:
        return 400, "application/json", json.dumps({"error": str(e)})


def tags_list(store: Store, request: Request, budget: Budget) -> Reply:
    """/tags: the tags of the store's tagged series, sorted (`name` among them), graphite-web's
    `filter` (a regex) and `limit`."""
    names = store.names()
    return _tag_answer(
        request,
        lambda: tags.list_tags(names, request.get("filter"), request.get("limit"), budget.deadline),
    )


def tag_names(store: Store, request: Request, budget: Budget) -> Reply:
    """/tags/autoComplete/tags: tags starting `tagPrefix`, of the series `expr` match."""
    names = store.names()
    prefix, limit = request.get("tagPrefix"), request.get("limit")
    return _tag_answer(
        request, lambda: tags.auto_complete_tags(names, _exprs(request), prefix, limit, budget.deadline)
    )


def tag_values(store: Store, request: Request, budget: Budget) -> Reply:
    """/tags/autoComplete/values: a tag is required (graphite-web's 400); its values starting
    `valuePrefix`, on the series `expr` match."""
    tag = request.get("tag")
    if not tag:
        return 400, "application/json", json.dumps({"error": "no tag specified"})
    names = store.names()
    prefix, limit = request.get("valuePrefix"), request.get("limit")
    return _tag_answer(
        request,
        lambda: tags.auto_complete_values(names, _exprs(request), tag, prefix, limit, budget.deadline),
    )


def find_series(store: Store, request: Request, budget: Budget) -> Reply:
    """/tags/findSeries: an expression is required (graphite-web's 400); the paths of the
    series every expression matches, sorted."""
    exprs = _exprs(request)
    if not exprs:
        return 400, "application/json", json.dumps({"error": "no tag expressions specified"})
    names = store.names()
    return _tag_answer(request, lambda: tags.find_series(names, exprs, budget.deadline))


def events(request: Request) -> Reply:
    """/events/get_data: Grafana's annotations ask for events; the store keeps none."""
    return _json(request, [])


# path -> answer(store, request, budget): read the store, in the render threads
STORE_PATHS: dict[str, Callable[[Store, Request, Budget], Answer]] = {
    "/render": lambda store, req, budget: render_parts(store, req, budget=budget),
    "/metrics/find": lambda store, req, budget: find_nodes(store, req),
    "/metrics/expand": lambda store, req, budget: expand(store, req, budget),
    "/metrics/index.json": lambda store, req, budget: index(store, req),
    "/tags": tags_list,  # and /tags/: each store path is routed with its trailing slash too
    "/tags/autoComplete/tags": tag_names,
    "/tags/autoComplete/values": tag_values,
    "/tags/findSeries": find_series,
}
# path -> answer(request): no store read
PLAIN_PATHS: dict[str, Callable[[Request], Reply]] = {
    "/functions": functions_list,
    "/functions/": functions_list,
    "/version": version,
    "/version/": version,
    "/events/get_data": events,
}
