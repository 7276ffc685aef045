"""statsd_exporter's mapping files, read as statsd_exporter reads them (prometheus_mapping.py):
globs, regexes, captures, labels, drop, match_metric_type, the order rules are tried in, and the
one line a bad file gets."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from webops.cli import main
from webops.common.config import ConfigError
from webops.statsd import settings as statsd_config
from webops.statsd.prometheus_mapping import Mapped, load, parse


def mapped(rules: list[dict], name: str, metric_type: str = "counter", **defaults) -> Mapped | None:
    doc: dict = {"mappings": rules}
    if defaults:
        doc["defaults"] = defaults
    return parse(doc).map(name, metric_type)


def test_a_glob_node_is_one_dotted_part_and_captures_fill_name_and_labels() -> None:
    rules = [
        {
            "match": "test.dispatcher.*.*.*",
            "name": "dispatcher_events_total",
            "labels": {"processor": "$1", "action": "$2", "outcome": "$3", "job": "test_dispatcher"},
        },
        {"match": "*.signup.*.*", "name": "signup_events_total", "labels": {"job": "${1}_server"}},
        {"match": "test.*.*.counter", "name": "${2}_total", "labels": {"provider": "$1"}},
    ]
    m = mapped(rules, "test.dispatcher.FooProcessor.send.success")
    assert m == Mapped(
        "dispatcher_events_total",
        (
            ("action", "send"),
            ("job", "test_dispatcher"),
            ("outcome", "success"),
            ("processor", "FooProcessor"),
        ),
    )
    assert mapped(rules, "foo_product.signup.facebook.failure") == Mapped(
        "signup_events_total", (("job", "foo_product_server"),)
    )
    assert mapped(rules, "test.aws.requests.counter") == Mapped("requests_total", (("provider", "aws"),))
    # a * never spans a dot, and every node must match
    assert mapped(rules, "test.dispatcher.a.b") is None
    assert mapped(rules, "test.dispatcher.a.b.c.d") is None
    assert mapped(rules, "x.signup.a.b.c") is None


def test_glob_references_follow_statsd_exporter() -> None:
    """`$1_x` names a capture `1_x` (empty), as in statsd_exporter; `${1}_x` is capture 1 then _x;
    a capture that does not exist is empty; a filled-in name is made Prometheus-safe."""
    rules = [{"match": "a.*.*", "name": "n_$1_x", "labels": {"l": "$1_x", "r": "${1}_x", "gone": "$9"}}]
    assert mapped(rules, "a.get-user.b") == Mapped("n_", (("gone", ""), ("l", ""), ("r", "get-user_x")))
    assert mapped([{"match": "a.*", "name": "${1}"}], "a.get-user") == Mapped("get_user", ())
    assert mapped([{"match": "a.*", "name": "${1}"}], "a.9lives").name == "_9lives"


def test_regex_matches_anywhere_with_numbered_and_named_groups() -> None:
    rules = [
        {
            "match": r"(.*)\.(.*)--(.*)\.status\.(?P<code>\d+)\.count",
            "match_type": "regex",
            "name": "request_total",
            "labels": {"hostname": "$1", "exec": "${2}", "protocol": "$3", "code": "$code", "raw": "$$0"},
        },
        {"match": ".", "match_type": "regex", "name": "everything", "labels": {"full": "${0}"}},
    ]
    m = mapped(rules, "web1.api--http.status.503.count")
    assert m == Mapped(
        "request_total",
        (("code", "503"), ("exec", "api"), ("hostname", "web1"), ("protocol", "http"), ("raw", "$0")),
    )
    # `.` is found in any name (statsd_exporter searches; it does not anchor), and $0 is the match
    assert mapped(rules, "other") == Mapped("everything", (("full", "o"),))
    anchored = [{"match": "^api$", "match_type": "regex", "name": "a"}]
    assert mapped(anchored, "api.x") is None and mapped(anchored, "api") == Mapped("a", ())


def test_defaults_match_type_makes_every_rule_a_regex() -> None:
    rules = [{"match": "lat_(ms|s)", "name": "lat"}]
    assert mapped(rules, "lat_ms", match_type="regex") == Mapped("lat", ())
    with pytest.raises(ValueError, match="invalid glob"):
        parse({"mappings": rules})


def test_first_glob_in_file_order_wins_and_globs_go_before_regexes() -> None:
    rules = [
        {"match": "a.*", "match_type": "regex", "name": "regex_first_in_file"},
        {"match": "a.*", "name": "wildcard"},
        {"match": "a.b", "name": "literal"},
    ]
    assert mapped(rules, "a.b").name == "wildcard"  # the first glob, though a regex came before
    assert mapped(rules, "a.bc").name == "wildcard"
    assert mapped(rules, "xa.b").name == "regex_first_in_file"  # no glob matches: the regexes


def test_glob_disable_ordering_prefers_the_most_specific_from_the_left() -> None:
    rules = [
        {"match": "a.*.*", "name": "star_star"},
        {"match": "a.*.d", "name": "star_d"},
        {"match": "a.b.*", "name": "b_star"},
    ]
    assert mapped(rules, "a.b.d").name == "star_star"
    assert mapped(rules, "a.b.d", glob_disable_ordering=True).name == "b_star"
    assert mapped(rules, "a.c.d", glob_disable_ordering=True).name == "star_d"
    assert mapped(rules, "a.c.e", glob_disable_ordering=True).name == "star_star"


def test_match_metric_type_limits_a_rule_to_one_kind() -> None:
    rules = [
        {"match": "foo.*", "name": "foo_timer", "match_metric_type": "observer"},
        {"match": "foo.*", "name": "foo_total", "match_metric_type": "counter"},
        {"match": "foo_(.*)", "match_type": "regex", "name": "foo_gauge", "match_metric_type": "gauge"},
    ]
    assert mapped(rules, "foo.x", "observer").name == "foo_timer"
    assert mapped(rules, "foo.x", "counter").name == "foo_total"
    assert mapped(rules, "foo.x", "gauge") is None
    assert mapped(rules, "foo_x", "gauge").name == "foo_gauge"
    assert mapped(rules, "foo_x", "counter") is None


def test_drop_observer_type_buckets_and_honor_labels() -> None:
    rules = [
        {"match": "debug.*", "action": "drop", "name": "dropped"},
        {"match": "t.*", "name": "t", "observer_type": "histogram", "histogram_options": {"buckets": [1, 2]}},
        {"match": "u.*", "name": "u", "honor_labels": True, "labels": {"env": "dev"}},
        {"match": "v.*", "name": "v"},
    ]
    assert mapped(rules, "debug.x").drop
    t = mapped(rules, "t.x", "observer")
    assert (t.observer, t.buckets) == ("histogram", (1, 2))
    assert mapped(rules, "u.x").honor_labels
    # a rule without its own takes the file's defaults; without those, None (the config's)
    v = mapped(rules, "v.x", observer_type="summary", histogram_options={"buckets": [5]})
    assert (v.observer, v.buckets) == ("summary", (5,))
    assert (mapped(rules, "v.x").observer, mapped(rules, "v.x").buckets) == (None, None)


def test_lookups_are_cached_and_the_cache_is_bounded() -> None:
    mapper = parse({"mappings": [{"match": "a.*", "name": "a"}]}, cache_size=10)
    for i in range(1000):
        mapper.map(f"a.{i}", "counter")
    info = mapper.map.cache_info()
    assert info.currsize == 10 and info.maxsize == 10
    mapper.map("a.999", "counter")
    assert mapper.map.cache_info().hits == info.hits + 1


def test_statsd_exporters_own_keys_load_and_the_ignored_ones_do_nothing() -> None:
    doc = {
        "defaults": {"ttl": "1m", "summary_options": {"max_age": "30s"}, "observer_type": "histogram"},
        "mappings": [
            {
                "match": "x.*",
                "name": "x",
                "help": "an x",
                "ttl": "5m",
                "summary_options": {"quantiles": [{"quantile": 0.99, "error": 0.001}]},
                "histogram_options": {"buckets": [1], "native_histogram_bucket_factor": 1.1},
            }
        ],
    }
    assert parse(doc).map("x.y", "observer") == Mapped("x", (), observer="histogram", buckets=(1,))
    assert parse({"mappings": []}).map("x", "counter") is None  # a file without rules maps nothing


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected an object with defaults and mappings"),
        ({"mapings": []}, "unknown key 'mapings' in the file"),
        ({"mappings": [{"match": "a.*"}]}, r"mappings\[0\] \(match 'a.\*'\): name: every rule needs"),
        ({"mappings": [{"match": "a.b*", "name": "x"}]}, r"mappings\[0\] .*invalid glob"),
        (
            {"mappings": [{"match": "(", "match_type": "regex", "name": "x"}]},
            r"mappings\[0\] .*invalid regex",
        ),
        ({"mappings": [{"match": "a", "name": "a.b"}]}, "is not a Prometheus name"),
        ({"mappings": [{"match": "a", "name": "a", "labels": {"a-b": "1"}}]}, "'a-b' is not a label name"),
        ({"mappings": [{"match": "a", "name": "a", "action": "keep"}]}, "action: expected one of map, drop"),
        ({"mappings": [{"match": "a", "name": "a", "match_type": "re"}]}, "match_type: expected one of"),
        ({"mappings": [{"match": "a", "name": "a", "match_metric_type": "timer"}]}, "match_metric_type"),
        ({"mappings": [{"match": "a", "name": "a", "observer_type": "hist"}]}, "observer_type"),
        ({"mappings": [{"match": "a", "name": "a", "scale": 0.001}]}, "unknown key 'scale'"),
        (
            {"mappings": [{"match": "a", "name": "a", "histogram_options": {"buckets": [2, 1]}}]},
            "buckets: bucket bounds must be strictly increasing",
        ),
        ({"defaults": {"histogram_options": {"buckets": []}}}, "defaults: histogram_options: buckets"),
        ({"defaults": {"glob_disable_ordering": "yes"}}, "defaults: glob_disable_ordering"),
        # found by attacking the surface: each went through before
        (None, "expected an object with defaults and mappings"),
        ({"mappings": [{"match": "a", "name": "a", "labels": {"__name__": "$1"}}]}, "__ are Prometheus' own"),
        ({"mappings": [{"match": "a", "name": 123}]}, "name: expected a string, got 123"),
        (
            {"defaults": {"histogram_options": {"buckets": list(range(1, 102))}}},
            "defaults: histogram_options: buckets: at most 100 buckets",
        ),
    ],
)
def test_a_bad_file_says_which_rule_and_why(doc, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(doc)


def test_load_reads_yaml_and_json_and_a_bad_file_is_one_line(tmp_path: Path) -> None:
    yml = tmp_path / "m.yml"
    yml.write_text('mappings:\n- match: "a.*"\n  name: "a"\n  labels:\n    x: "$1"\n')
    assert load(str(yml)).map("a.b", "gauge") == Mapped("a", (("x", "b"),))
    js = tmp_path / "m.json"
    js.write_text(json.dumps({"mappings": [{"match": "a.*", "name": "j"}]}))
    assert load(str(js)).map("a.b", "gauge").name == "j"
    bad = tmp_path / "bad.yml"
    bad.write_text("mappings: [\n  - match: a\n")
    with pytest.raises(ConfigError, match=r"bad.yml: not YAML at line \d+") as e:
        load(str(bad))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"missing\.yml: cannot read"):
        load(str(tmp_path / "missing.yml"))


def test_a_bad_mapping_file_fails_check_config_with_exit_2(tmp_path: Path, capsys) -> None:
    mapping = tmp_path / "map.yml"
    mapping.write_text('mappings:\n- match: "(.*"\n  match_type: regex\n  name: x\n')
    assert main(["statsd", "--check-config", "--prometheus-mapping", str(mapping)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"prometheus.mapping: {mapping}: mappings[0] (match '(.*'): invalid regex" in err
    mapping.write_text('mappings:\n- match: "a.*"\n  name: a\n')
    config = tmp_path / "c.js"
    config.write_text('{ prometheus: { timers: "histogram" } }')
    assert main(["statsd", "--check-config", str(config), "--prometheus-mapping", str(mapping)]) == 0
    out = capsys.readouterr().out
    assert f'"mapping": "{mapping}"' in out and f"{config}:1, --prometheus-mapping" in out


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"buckets": []}, "prometheus: buckets: expected a non-empty list"),
        ({"buckets": [1, 1]}, "prometheus: buckets: bucket bounds must be strictly increasing"),
        ({"buckets": [1, "inf"]}, "prometheus: buckets: bucket bounds are numbers, got 'inf'"),
        ({"buckets": [1, float("inf")]}, "prometheus: buckets: expected a finite number"),
        ({"buckets": ["5", "10"]}, "prometheus: buckets: bucket bounds are numbers, got '5'"),
        ({"buckets": list(range(1, 102))}, "prometheus: buckets: at most 100 buckets, got 101"),
        ({"timers": "histograms"}, "prometheus: timers: expected one of summary, histogram, both"),
    ],
)
def test_bad_prometheus_settings_are_config_errors(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        statsd_config.build({"prometheus": section})


def test_the_defaults_keep_summaries_and_the_clients_buckets_in_ms() -> None:
    settings = statsd_config.build({}).prometheus
    assert settings.timers == "summary" and settings.mapper is None
    assert settings.buckets == (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


# --- found by attacking the surface ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty (a file without rules says `mappings: []`)"),
        ("# only a comment\n", "empty"),
        ("mappings: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
        ("defaults: {histogram_options: {buckets: [1" + "0" * 5000 + "]}}\n", "digits"),
        ("mappings: []\nmappings: []\n", "key 'mappings' given twice"),
    ],
)
def test_a_file_yaml_chokes_on_or_an_empty_one_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    """An empty file (the moment `cp` has truncated it) no longer maps nothing; deep nesting and
    a 5,000-digit integer were tracebacks (and, at an automatic reload, stopped the flushes);
    a second `mappings:` silently replaced the first."""
    path = tmp_path / "m.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        load(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_catastrophic_regex_gives_up_on_a_name_instead_of_holding_the_daemon(caplog) -> None:
    """`(a|aa)+$` against 40 a's and a b backtracks for hours in `re` (as `(a+)+$` did, which
    the regex module now answers at once); now the rule is abandoned for that name after
    REGEX_SECONDS, counted and said, and the next rule is tried."""
    mapper = parse(
        {
            "mappings": [
                {"match": "(a|aa)+$", "match_type": "regex", "name": "slow"},
                {"match": "b$", "match_type": "regex", "name": "ends_in_b"},
            ]
        }
    )
    with caplog.at_level(logging.WARNING, logger="webops.statsd"):
        got = mapper.map("a" * 40 + "b", "counter")
    assert got is not None and got.name == "ends_in_b"
    assert mapper.timeouts == 1
    assert "gave up on a name" in caplog.text
    assert mapper.map("aaa", "counter").name == "slow"  # an ordinary name still matches
