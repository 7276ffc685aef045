"""Types of the statsd hot path's extension (Rust, native/src/lib.rs), for mypy: the module is
built by `pip install` and has no Python source. test_hotpath.py holds it to what is built
(mypy's stubtest: every name, property and parameter)."""

from typing import Literal, TypedDict, final

__all__ = ["VLEN", "Intake", "Taken", "json_points", "parse_line"]

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
