"""A fair scheduler in front of the model, one per worker, with admission control by cost.

The model computes one batch at a time in a worker (the tokenizer is not thread-safe, and the
worker's torch threads are its parallelism), so what a request waits for is everything ahead of
it. Under a plain lock that is whole requests: a small request behind a 50,000-word-piece one
waited its 16-23 s. Here each request is split into small batches (`split`: at most
BATCH_SENTENCES sentences and BATCH_PIECES padded word pieces, ~0.15 s of a core) and the
requests in a worker take turns, one batch each, round robin: a small request waits for at most
one batch of each request ahead of it, whatever their size.

Admission: a request is refused (`Busy`, a 503 with Retry-After) when the word pieces already
queued in this worker plus its own are over `max_cost`, instead of waiting without bound; a
request is always admitted into an empty worker. Retry-After is the queued work over the
measured rate.

Hooks for health and metrics: `depth()` (requests admitted and not finished), `cost_queued()`
(word pieces they still have to encode), `full()` (no request would be admitted now), `admits(cost)`
(a request of that cost would be admitted now), `retry_after()` (what a 503 says) and
`on_depth` (called with the depth whenever it changes).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

BATCH_SENTENCES = 32
BATCH_PIECES = 512  # padded word pieces a batch: ~0.15 s of one core at ~3,100 word pieces/s


class Busy(Exception):
    """The worker's queue is full: retry after `retry_after` seconds."""

    def __init__(self, retry_after: int, queued: int) -> None:
        super().__init__(f"{queued} word pieces queued; retry after {retry_after} s")
        self.retry_after, self.queued = retry_after, queued


def split(pieces: Sequence[int]) -> list[list[int]]:
    """Indices of sentences grouped into batches, longest first (as sentence-transformers sorts
    them, so little is padded): each batch at most BATCH_SENTENCES sentences and BATCH_PIECES
    word pieces once padded to its longest (a sentence longer than that is a batch alone)."""
    order = sorted(range(len(pieces)), key=lambda i: -pieces[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            longest = pieces[batch[0]]  # sorted: the first is the longest
            if len(batch) < BATCH_SENTENCES and longest * (len(batch) + 1) <= BATCH_PIECES:
                batch.append(i)
                continue
        batches.append([i])
    return batches


class _Job:
    __slots__ = ("left", "turn")

    def __init__(self, cost: int) -> None:
        self.left = cost
        self.turn = threading.Event()


class Scheduler:
    def __init__(self, max_cost: int, on_depth: Callable[[int], None] | None = None) -> None:
        self.max_cost = max_cost
        self.on_depth = on_depth
        self.lock = threading.Lock()  # held by whoever calls the model or its tokenizer
        self._state = threading.Lock()
        self._waiting: deque[_Job] = deque()  # jobs waiting for their turn, in turn order
        self._holder: _Job | None = None
        self._jobs = 0
        self._cost = 0
        self._rate = 3000.0  # word pieces/s, measured as batches run

    def depth(self) -> int:
        return self._jobs

    def cost_queued(self) -> int:
        return self._cost

    def full(self) -> bool:
        return self._cost >= self.max_cost

    def admits(self, cost: int) -> bool:
        """Whether a request of `cost` word pieces would be admitted now (what `run` checks)."""
        return not self._jobs or self._cost + cost <= self.max_cost

    def retry_after(self, extra: int = 0) -> int:
        return max(1, math.ceil((self._cost + extra) / self._rate))

    def run(self, batches: Sequence[tuple[int, Callable[[], T]]]) -> list[T]:
        """Run each (cost, work) in turn with the other requests' batches, holding `lock`; their
        results in order. Raises Busy when the worker's queue cannot take `sum(cost)` more."""
        if not batches:
            return []
        cost = sum(c for c, _ in batches)
        job = _Job(cost)
        with self._state:
            if self._jobs and self._cost + cost > self.max_cost:
                raise Busy(self.retry_after(), self._cost)
            self._jobs += 1
            self._cost += cost
            if self._holder is None:
                self._holder = job
                job.turn.set()
            else:
                self._waiting.append(job)
            depth = self._jobs
        self._report(depth)
        results: list[T] = []
        for n, (c, work) in enumerate(batches):
            job.turn.wait()
            started = time.perf_counter()
            done = False
            try:
                with self.lock:
                    results.append(work())
                done = True
            finally:
                self._pass(job, c, time.perf_counter() - started, again=done and n < len(batches) - 1)
        return results

    def _pass(self, job: _Job, cost: int, seconds: float, again: bool) -> None:
        """The turn goes to the next job waiting; `job` goes to the back of the line if it has more."""
        with self._state:
            self._cost -= cost
            job.left -= cost
            if seconds > 0 and cost > 0:
                self._rate = max(100.0, 0.8 * self._rate + 0.2 * cost / seconds)
            job.turn.clear()
            if again:
                self._waiting.append(job)
            else:  # finished (or failed: what it had left is no longer queued)
                self._cost -= job.left
                job.left = 0
                self._jobs -= 1
            following = self._waiting.popleft() if self._waiting else None
            self._holder = following
            if following is not None:
                following.turn.set()
            depth = self._jobs
        if not again:
            self._report(depth)

    def _report(self, depth: int) -> None:
        if self.on_depth is not None:
            with contextlib.suppress(Exception):  # a metrics hook never fails a request
                self.on_depth(depth)
