"""The timers' Graphite plaintext (naming.timer_lines, natively native/src/lines.rs) against the
plain one: each of timer_points' paths and values written as `f"{path} {number(value)}{ts}"`."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import need
from webops.statsd import hotpath
from webops.statsd import settings as statsd_config
from webops.statsd.backends import naming as naming_mod
from webops.statsd.backends.naming import GraphiteNaming, timer_lines, timer_points
from webops.statsd.jsfmt import number

TS = " 1700000000\n"
NS_OPTIONS = st.fixed_dictionaries(
    {
        "keyNameSanitize": st.booleans(),
        "graphite": st.fixed_dictionaries(
            {"legacyNamespace": st.booleans(), "globalSuffix": st.sampled_from(["", "host1"])}
        ),
    }
)
KEYS = st.text(st.sampled_from("ab.;=_ -é9"), min_size=1, max_size=12)
# short dyadic fractions too: their exact value can lie halfway between two shortest candidates,
# where JavaScript and Python take the even digit (1223383794756801.25 is written ...801.2)
NUMBERS = (
    st.floats()
    | st.builds(math.ldexp, st.integers(1, 2**53), st.integers(-40, 10))
    | st.integers(-(2**70), 2**70)
    | st.integers(0, 1000)
    | st.booleans()
)
STATS = st.dictionaries(
    st.sampled_from(["count_90", "mean_90", "upper_99_9", "std", "count", "count_ps", "median"]),
    NUMBERS,
    max_size=7,
)
SUMMARY = st.tuples(
    STATS, st.none() | st.dictionaries(st.sampled_from(["bin_1", "bin_2_5", "bin_inf"]), NUMBERS)
)
SUMMARIES = st.dictionaries(KEYS, SUMMARY, max_size=6).map(
    lambda d: {k: {**stats, **({"histogram": h} if h is not None else {})} for k, (stats, h) in d.items()}
)


def namings(options: dict) -> list[GraphiteNaming]:
    """The same naming on the Python hot path and, where the extension is built, the native one."""
    hot_paths = ["python", "native"] if naming_mod._native is not None else ["python"]
    return [GraphiteNaming(statsd_config.build({**options, "hotPath": h})) for h in hot_paths]


def plain(naming: GraphiteNaming, summaries: dict) -> str:
    ns = naming.namespace("timers")
    return "".join(
        f"{p.path} {number(p.value)}{TS}"
        for key, summary in summaries.items()
        for p in timer_points(naming, ns, key, None, summary)  # type: ignore[arg-type]
    )


@given(NS_OPTIONS, SUMMARIES)
@example({}, {"t": {"upper": 1223383794756801.25, "mean": 2.98023223876953125e-08, "std": 5e-324}})
def test_timer_lines_are_the_plain_lines_on_both_hot_paths(options: dict, summaries: dict) -> None:
    for naming in namings(options):
        assert "".join(timer_lines(naming, "timers", summaries, TS)) == plain(naming, summaries)


def test_the_native_writer_is_tried() -> None:
    """The property above compares the extension's text only where it is built and chosen."""
    need(naming_mod._native is not None, f"the native extension is not built: {hotpath.NATIVE_MISSING}")
    assert namings({})[-1].native and not namings({})[0].native


@given(NS_OPTIONS, st.lists(st.lists(KEYS, max_size=5), min_size=1, max_size=4))
def test_heads_and_tails_kept_from_flush_to_flush_are_those_of_the_key(options: dict, flushes: list) -> None:
    """splits_of() takes the last flush's where it can, and keeps only this flush's keys."""
    naming = namings(options)[0]
    ns = naming.namespace("timers")
    for keys in flushes:
        got = naming.splits_of("timers", keys)
        assert got == {k: naming.split(ns, k) for k in keys}
        assert naming.splits["timers"].keys() == set(keys)
        for key, (head, tail) in got.items():
            assert head + "mean" + tail == naming.path(ns, key, "mean")
