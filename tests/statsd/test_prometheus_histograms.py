"""Timers as Prometheus histograms on /metrics (prometheus.py), and mapping files at work: the
bucket maths alone, the exposition as Prometheus' parser reads it, then a real daemon."""

from __future__ import annotations

import signal
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_until
from tests.statsd.test_http import get, strict_families
from webops.common.jsnumber import number
from webops.statsd.aggregate import Aggregator
from webops.statsd.exposition import format_value
from webops.statsd.prometheus import Histogram, PrometheusSettings, PrometheusView, observe
from webops.statsd.prometheus_mapping import parse
from webops.statsd.snapshot import SummarySettings, summarize


def test_buckets_are_cumulative_and_inf_is_the_count() -> None:
    h = observe(None, (5, 10, 25), [1, 5, 6, 10, 11, 30], 6)
    assert h == Histogram((5, 10, 25), (2, 4, 5), 63, 6)  # le=5 counts 5 itself: "at or under"


def test_flushes_add_up_and_new_bounds_start_again() -> None:
    h = observe(None, (5, 10), [1, 7], 2)
    h = observe(h, (5, 10), [], 0)  # an idle flush changes nothing
    h = observe(h, (5, 10), [2, 3, 100], 3)
    assert h == Histogram((5, 10), (3, 4), 113, 5)
    assert observe(h, (1, 10), [2], 1) == Histogram((1, 10), (0, 1), 2, 1)


def test_a_sampled_timer_counts_each_sample_as_one_over_its_rate() -> None:
    agg = Aggregator()
    agg.ingest(b"t:3|ms|@0.5\nt:30|ms|@0.5")
    snap = summarize(agg.take(1), SummarySettings())
    series = snap.tables["timers"]["t"]
    h = observe(None, (10,), series.samples, series.count)
    assert h == Histogram((10,), (2,), 66, 4)  # 2 samples at 1/2: 4 values, one in ten below 10


@given(
    flushes=st.lists(
        st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=30), min_size=1, max_size=5
    ),
    bounds=st.lists(
        st.floats(min_value=-10, max_value=1e6, allow_nan=False), min_size=1, max_size=12, unique=True
    ),
)
def test_bucket_counts_equal_a_naive_count(flushes: list[list[float]], bounds: list[float]) -> None:
    bounds_t = tuple(sorted(bounds))
    h = None
    for values in flushes:
        h = observe(h, bounds_t, sorted(values), len(values))
    everything = [v for values in flushes for v in values]
    assert h is not None
    assert h.cumulative == tuple(sum(1 for v in everything if v <= b) for b in bounds_t)
    assert h.count == len(everything)
    assert all(a <= b for a, b in zip(h.cumulative, (*h.cumulative[1:], h.count), strict=True))


def view_text(settings: PrometheusSettings, *intervals: bytes) -> str:
    agg = Aggregator()
    view = PrometheusView(settings)
    for i, lines in enumerate(intervals):
        agg.ingest(lines)
        view.update(summarize(agg.take(i + 1), SummarySettings()))
    view.refresh()
    return view.render()


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, by (name, sorted labels), as Prometheus' client parser reads the text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"{key} twice"
            out[key] = s.value
    return out


def test_histogram_exposition_across_flushes() -> None:
    text = view_text(
        PrometheusSettings("histogram", (5, 10)), b"lat:3|ms\nlat:7|ms|#env:prod", b"lat:12|ms\nlat:5|ms"
    )
    types = strict_families(text)
    assert types["lat"] == "histogram" and "lat_sum" not in types
    got = samples_of(text)
    assert got[("lat_bucket", (("le", "5"),))] == 2
    assert got[("lat_bucket", (("le", "10"),))] == 2
    assert got[("lat_bucket", (("le", "+Inf"),))] == 3 == got[("lat_count", ())]
    assert got[("lat_sum", ())] == 20
    assert got[("lat_bucket", (("env", "prod"), ("le", "10")))] == 1
    assert "lat{" not in text and 'quantile="' not in text  # no summary left


def test_both_keeps_the_summary_and_adds_name_histogram() -> None:
    text = view_text(PrometheusSettings("both", (5,)), b"lat:3|ms\nlat:9|ms\nlat_histogram:1|g")
    types = strict_families(text)
    assert types["lat"] == "summary" and types["lat_histogram"] == "histogram"
    assert types["lat_histogram_gauge"] == "gauge"  # a gauge of that name moves aside
    got = samples_of(text)
    assert got[("lat", (("quantile", "0.5"),))] == 6 and got[("lat_count", ())] == 2
    assert got[("lat_histogram_bucket", (("le", "5"),))] == 1
    assert got[("lat_histogram_count", ())] == 2


def test_the_default_is_the_summary_of_before() -> None:
    assert strict_families(view_text(PrometheusSettings(), b"lat:3|ms")) == {
        "lat": "summary",
        "statsd_packets_received_total": "counter",
        "statsd_metrics_received_total": "counter",
        "statsd_bad_lines_seen_total": "counter",
        "statsd_processing_time": "gauge",
        "statsd_num_stats": "gauge",
        "statsd_last_flush_timestamp_seconds": "gauge",
    }


MAPPING = {
    "mappings": [
        {"match": "api.*.time", "name": "api_duration", "labels": {"route": "$1", "env": "mapped"}},
        {
            "match": "web.*.time",
            "name": "web_duration",
            "labels": {"env": "mapped"},
            "honor_labels": True,
            "observer_type": "histogram",
            "histogram_options": {"buckets": [100]},
        },
        {"match": "req.*", "name": "requests_total", "labels": {"code": "$1"}},
        {"match": "hits.*", "name": "hits", "labels": {"page": "$1"}},
        {"match": "debug\\.", "match_type": "regex", "action": "drop", "name": "dropped"},
    ]
}


def test_a_mapping_renames_labels_drops_and_chooses_per_timer() -> None:
    settings = PrometheusSettings("summary", (5, 10), parse(MAPPING))
    text = view_text(
        settings,
        b"api.users.time:4|ms|#env:prod\nweb.home.time:50|ms|#env:prod\nreq.200:2|c\nhits.home:1|c\n"
        b"debug.x:1|c\ndebug.y:5|g\nplain.name:3|g",
    )
    types = strict_families(text)
    got = samples_of(text)
    # the rule's label wins over the tag of the same name...
    assert got[("api_duration", (("env", "mapped"), ("quantile", "0.5"), ("route", "users")))] == 4
    assert types["api_duration"] == "summary"  # prometheus.timers for a rule that does not choose
    # ...unless honor_labels; and a rule's observer_type and buckets win over the config's
    assert types["web_duration"] == "histogram"
    assert got[("web_duration_bucket", (("env", "prod"), ("le", "100")))] == 1
    assert ("web_duration_bucket", (("env", "prod"), ("le", "5"))) not in got
    assert got[("requests_total", (("code", "200"),))] == 2  # a name ending in _total keeps it
    assert got[("hits_total", (("page", "home"),))] == 1
    assert got[("plain_name", ())] == 3  # unmatched: named as without a mapping
    assert "debug" not in text


def test_histogram_families_on_a_real_daemon(start_daemon) -> None:
    d = start_daemon(flushInterval=300, prometheus={"timers": "histogram", "buckets": [5, 50]})
    d.send(b"rt:4|ms\nrt:40|ms\nrt:400|ms")

    def counts() -> dict:
        return samples_of(get(d.http_port, "/metrics")[1])

    wait_until(lambda: counts().get(("rt_count", ())) == 3, what="the first flush on /metrics")
    d.send(b"rt:5|ms")
    wait_until(lambda: counts().get(("rt_count", ())) == 4, what="the second flush on /metrics")
    text = get(d.http_port, "/metrics")[1]
    assert strict_families(text)["rt"] == "histogram"
    got = samples_of(text)
    assert [got[("rt_bucket", (("le", le),))] for le in ("5", "50", "+Inf")] == [2, 3, 4]
    assert got[("rt_sum", ())] == 449


def test_a_reload_picks_up_a_changed_mapping_and_keeps_it_when_broken(start_daemon, tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yml"
    mapping.write_text('mappings:\n- match: "api.*"\n  name: "first"\n  labels:\n    route: "$1"\n')
    d = start_daemon(flushInterval=300, prometheus={"mapping": str(mapping)}, automaticConfigReload=False)

    def names() -> set[str]:
        d.send(b"api.users:1|g")
        return {name for name, _ in samples_of(get(d.http_port, "/metrics")[1])}

    wait_until(lambda: "first" in names(), what="the first mapping's name")
    mapping.write_text('mappings:\n- match: "api.*"\n  name: "second"\n')
    d.signal(signal.SIGHUP)
    wait_until(lambda: "second" in names() and "first" not in names(), what="the reloaded mapping's name")
    mapping.write_text('mappings:\n- match: "api.*"\n  name: "bad name"\n')
    d.signal(signal.SIGHUP)
    wait_until(lambda: "keeping the running configuration" in d.logs(), what="the failed reload")
    assert "mapping.yml: mappings[0] (match 'api.*'): name: 'bad name' is not a Prometheus name" in d.logs()
    assert "second" in names()


def test_a_changed_mapping_file_is_reloaded_without_a_signal(start_daemon, tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yml"
    mapping.write_text('mappings:\n- match: "api.*"\n  name: "first"\n')
    d = start_daemon(flushInterval=300, prometheus={"mapping": str(mapping)})

    def names() -> set[str]:
        d.send(b"api.users:1|g")
        return {name for name, _ in samples_of(get(d.http_port, "/metrics")[1])}

    wait_until(lambda: "first" in names(), what="the first mapping's name")
    mapping.write_text('mappings:\n- match: "api.*"\n  name: "second"\n')
    wait_until(lambda: "second" in names(), what="the changed mapping file to be read")


def test_a_mapping_file_yaml_chokes_on_keeps_the_flushes_going(start_daemon, tmp_path: Path) -> None:
    """Found by attacking the surface: a mapping file 3,000 brackets deep, picked up by the
    automatic reload, raised a RecursionError out of the flush loop: no flush after it, nothing
    logged, /health still up. Now it is one line, and the flushes go on with the old mapping."""
    mapping = tmp_path / "mapping.yml"
    mapping.write_text('mappings:\n- match: "api.*"\n  name: "first"\n')
    d = start_daemon(flushInterval=300, prometheus={"mapping": str(mapping)})

    def metrics() -> dict:
        d.send(b"api.users:1|c")
        return samples_of(get(d.http_port, "/metrics")[1])

    wait_until(lambda: ("first_total", ()) in metrics(), what="the first mapping's name")
    mapping.write_text("mappings: " + "[" * 3000 + "]" * 3000 + "\n")
    wait_until(lambda: "nested too deeply (keeping the running configuration)" in d.logs(), what="the error")
    total = metrics()[("first_total", ())]
    wait_until(lambda: metrics()[("first_total", ())] > total, what="flushes after the bad file")


@given(st.one_of(st.floats(), st.integers(-(2**70), 2**70)))
@example(-0.0)
@example(0.0001)
@example(0.00001)
@example(9.5e15)
@example(1e16)
@example(2.0**60)
@example(-1e21)
def test_values_are_written_as_javascript_writes_them(value: float) -> None:
    """format_value's shortcuts (ints, repr in positional notation) agree with JS's Number#toString."""
    want = "NaN" if value != value else number(value).replace("Infinity", "Inf")
    assert format_value(value) == want


_COLLIDING = [
    "a.b",
    "a_b",
    "a-b",
    "x",
    "x_total",
    "x_sum",
    "x_bucket",
    "x_histogram",
    "x_gauge",
    "9x",
    "statsd_num_stats",
]
_TAGS = [
    "",
    "|#env:prod",
    "|#env:prod,host:a",
    "|#host:a,env:prod",
    '|#q:say "hi"',
    "|#q:back\\slash",
    "|#flag",
    # labels /metrics writes itself, and Prometheus' own: each made a line Prometheus rejects
    "|#statsd_name:x",
    "|#le:5",
    "|#quantile:0.5,env:prod",
    "|#__name__:forged",
]


@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(_COLLIDING),
            st.sampled_from(["c", "ms", "g", "s", "h"]),
            st.sampled_from(["1", "2.5", "0", "1e-7", "123456.789"]),
            st.sampled_from(_TAGS),
        ),
        max_size=25,
    ),
    timers=st.sampled_from(["summary", "histogram", "both"]),
)
def test_any_mix_of_names_kinds_and_tags_parses_with_no_series_twice(
    lines: list[tuple[str, str, str, str]], timers: str
) -> None:
    """Series that meet under one Prometheus name (`a.b`, `a_b`; a gauge `x_sum` and a timer `x`),
    tagged or not (quotes, backslashes), still make an exposition that Prometheus' parsers read,
    with every family typed once and every (name, labels) once."""
    data = "\n".join(f"{name}:{value}|{code}{tags}" for name, code, value, tags in lines).encode()
    text = view_text(PrometheusSettings(timers, (0.5, 2)), data, data)
    strict_families(text)
    samples_of(text)


def test_tags_and_rules_named_like_labels_metrics_writes_become_exported() -> None:
    """Found by attacking the surface: `tm:1|ms|#le:5` wrote `le` twice on every bucket line, a
    rule's `labels: {le: ...}` too, `#__n:z` a label in Prometheus' reserved `__` space: one
    packet made Prometheus reject the host's whole scrape."""
    mapper = parse(
        {"mappings": [{"match": "rule.*", "name": "ruled", "labels": {"le": "$1", "quantile": "q"}}]}
    )
    settings = PrometheusSettings("both", (5.0,), mapper)
    data = b"tm:1|ms|#le:5,quantile:0.9,__n:z\nrule.x:2|ms\n"
    got = samples_of(view_text(settings, data))
    tags = (("exported___n", "z"), ("exported_le", "5"), ("exported_quantile", "0.9"))
    assert got[("tm_histogram_bucket", (*tags, ("le", "5")))] == 1
    assert got[("tm", (*tags, ("quantile", "0.5")))] == 1
    assert got[("ruled", (("exported_le", "x"), ("exported_quantile", "q"), ("quantile", "0.5")))] == 2


def test_a_series_named_like_the_daemons_own_gets_a_suffix(start_daemon, tmp_path: Path) -> None:
    """Found by attacking the surface: a rule naming a client's gauge `statsd_health_up` wrote a
    second family of that name (Prometheus rejects the scrape; any client could forge the
    daemon's health). The daemon's own names are claimed first: the client's gets a suffix."""
    mapping = tmp_path / "m.yml"
    mapping.write_text(
        'mappings:\n- match: "own.*"\n  name: statsd_health_up\n'
        '- match: "req.*"\n  name: statsd_http_responses_total\n'
    )
    d = start_daemon(flushInterval=300, prometheus={"mapping": str(mapping)})

    def metrics() -> dict:
        d.send(b"own.a:0|g", b"req.a:1|c")
        text = get(d.http_port, "/metrics")[1]
        strict_families(text)
        return samples_of(text)

    wait_until(lambda: ("statsd_health_up_gauge", ()) in metrics(), what="the client's gauge, suffixed")
    got = metrics()
    assert got[("statsd_health_up", ())] == 1 and got[("statsd_health_up_gauge", ())] == 0
    # the client's counter under a name of its own (the parser shows a counter's samples with _total)
    assert [k for k in got if k[0].startswith("statsd_http_responses_total_counter")] != []
