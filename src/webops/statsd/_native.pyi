"""Types of the statsd hot path's extension (Rust, native/src/lib.rs), for mypy: the module is
built by `pip install` and has no Python source. test_hotpath.py holds it to what is built
(mypy's stubtest: every name, property and parameter)."""

from collections.abc import Mapping
from typing import Any, Literal, TypedDict, final

__all__ = ["VLEN", "Intake", "Taken", "TimerPlan", "json_points", "parse_line", "timer_lines"]

# A read's gauge writes: key -> the absolute value last written (or None), then the changes
# written after it, in order.
_GaugeWrites = dict[str, tuple[float | None, list[float]]]

VLEN: int  # datagrams per recvmmsg call

@final
class Taken:
    """One receiver's batch (hotpath.to_batch turns it into an aggregate.Batch)."""

    @property
    def counters(self) -> dict[str, float]: ...
    @property
    def timers(self) -> dict[str, tuple[list[float], float]]: ...  # samples, count
    @property
    def sets(self) -> dict[str, set[str]]: ...
    @property
    def reads(self) -> list[tuple[int, _GaugeWrites, bytes]]: ...  # seq, writes, lines for Python
    @property
    def seqs(self) -> list[int]: ...
    @property
    def packets(self) -> int: ...
    @property
    def metrics(self) -> int: ...
    @property
    def set_members_refused(self) -> int: ...
    @property
    def last_seen(self) -> float: ...
    @property
    def key_counts(self) -> dict[str, int]: ...
    @property
    def raw(self) -> list[bytes]: ...
    @property
    def raw_dropped(self) -> int: ...

@final
class Intake:
    def __new__(
        cls,
        fds: list[int],
        threads: int,
        max_series: int,
        max_set_members: int,
        key_flush: bool = False,
        keep_packets: int = 0,
        after: Intake | None = None,
        max_backlog: int = ...,
    ) -> Intake: ...
    def feed(self, datagrams: list[bytes], now: float) -> None: ...
    def take(self) -> list[Taken]: ...
    def held_back(self) -> int: ...
    def running(self) -> int: ...
    def stop(self) -> None: ...

# What parse_line makes of a line: its series key and its samples, each named by its fields.
class _Counter(TypedDict):
    kind: Literal["c"]
    value: float  # already divided by the rate

class _Timer(TypedDict):
    kind: Literal["ms"]  # h and d too
    value: float
    count: float  # 1 / rate

class _Gauge(TypedDict):
    kind: Literal["g"]
    value: float
    delta: bool  # written as +N / -N

class _Set(TypedDict):
    kind: Literal["s"]
    member: str

class _Parsed(TypedDict):
    key: str
    samples: list[_Counter | _Timer | _Gauge | _Set]

def parse_line(line: bytes) -> _Parsed | None: ...  # None: left to the Python parser
def json_points(
    values: list[float | int | None], start: int, step: int, skip_null: bool
) -> str | None: ...  # store/formats.py's datapoints text; None: a value it leaves to Python

class _Percentile(TypedDict):
    pct: float
    count: str  # the stats' names: count_90, mean_90, upper_90 (lower_top10), sum_90, sum_squares_90
    mean: str
    bound: str
    sum: str
    sum_squares: str

class _Histogram(TypedDict):
    metric: str  # the first entry whose metric is in a timer's key applies
    bounds: list[float | None]  # None: "inf"
    labels: list[str]  # bin_5, bin_7_5, bin_inf

class _TimerSummaries(TypedDict):
    summaries: dict[str, dict[str, Any]]  # key -> Etsy's timer stats (timerstats.TimerData)
    non_finite: list[str]  # keys left out: a statistic overflowed

@final
class TimerPlan:
    """A flush's timer statistics, the config's part (timerstats.native_plan makes it)."""

    def __new__(
        cls,
        per_second: float,
        percentiles: list[_Percentile],
        keep: list[str] | None,
        histograms: list[_Histogram],
    ) -> TimerPlan: ...
    def summarize(self, table: Mapping[str, Any]) -> _TimerSummaries | None: ...

def timer_lines(
    summaries: Mapping[str, Mapping[str, Any]], splits: Mapping[str, tuple[str, str]], ts: str
) -> str | None: ...
